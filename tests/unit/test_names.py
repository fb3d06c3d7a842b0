from __future__ import annotations

import pytest

from modelrunner.errors import InvalidName
from modelrunner.names import Dialect, ModelName, candidates, parse

OLLAMA = Dialect.OLLAMA
DMR = Dialect.DMR


@pytest.mark.parametrize(
    ("ref", "dialect", "expected"),
    [
        ("llama3.2", OLLAMA, "registry.ollama.ai/library/llama3.2:latest"),
        ("llama3.2:1b", OLLAMA, "registry.ollama.ai/library/llama3.2:1b"),
        ("jmorgan/mario:v2", OLLAMA, "registry.ollama.ai/jmorgan/mario:v2"),
        ("example.com/team/m:1", OLLAMA, "example.com/team/m:1"),
        ("localhost:5000/team/m", OLLAMA, "localhost:5000/team/m:latest"),
        ("https://example.com/team/m:1", OLLAMA, "example.com/team/m:1"),
        (
            "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
            OLLAMA,
            "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
        ),
        ("huggingface.co/org/repo:Q8_0", OLLAMA, "hf.co/org/repo:Q8_0"),
        ("smollm2", DMR, "docker.io/ai/smollm2:latest"),
        ("ai/smollm2", DMR, "docker.io/ai/smollm2:latest"),
        ("ai/smollm2:360M-Q4_K_M", DMR, "docker.io/ai/smollm2:360M-Q4_K_M"),
        ("docker.io/ai/smollm2:360M-Q4_K_M", DMR, "docker.io/ai/smollm2:360M-Q4_K_M"),
        ("index.docker.io/ai/smollm2", DMR, "docker.io/ai/smollm2:latest"),
        ("AI/SmolLM2:Q4_K_M", DMR, "docker.io/ai/smollm2:Q4_K_M"),  # name lowered, tag kept
        ("ghcr.io/acme/m:1", DMR, "ghcr.io/acme/m:1"),
        ("localhost:5000/m", DMR, "localhost:5000/library/m:latest"),
        ("myorg/m", DMR, "docker.io/myorg/m:latest"),
    ],
)
def test_parse_defaults_per_dialect(ref: str, dialect: Dialect, expected: str) -> None:
    assert str(parse(ref, dialect)) == expected


@pytest.mark.parametrize(
    "ref",
    [
        "",
        "   ",
        "../etc/passwd",
        "library/../../x",
        "a/b/c/d",
        "a//b",
        "model:",
        ":tag",
        "-leading-dash",
        "name with space",
        "ns.with.dots/model",  # dots are not allowed in an Ollama namespace
        "m@sha256:" + "0" * 64,
        "x" * 81,
        "model:" + "t" * 81,
        "host/ns/mo/del",
        "..",
        "m:..",
    ],
)
def test_invalid_names_are_rejected(ref: str) -> None:
    with pytest.raises(InvalidName):
        parse(ref, OLLAMA)


@pytest.mark.parametrize(
    ("name", "dialect", "shown"),
    [
        (ModelName("registry.ollama.ai", "library", "gemma3", "270m"), OLLAMA, "gemma3:270m"),
        (ModelName("registry.ollama.ai", "me", "m", "latest"), OLLAMA, "me/m:latest"),
        (ModelName("docker.io", "ai", "smollm2", "latest"), OLLAMA, "docker.io/ai/smollm2:latest"),
        (ModelName("docker.io", "ai", "smollm2", "latest"), DMR, "docker.io/ai/smollm2:latest"),
        (ModelName("hf.co", "org", "repo", "Q4_K_M"), OLLAMA, "hf.co/org/repo:Q4_K_M"),
    ],
)
def test_display_round_trips(name: ModelName, dialect: Dialect, shown: str) -> None:
    assert name.display(dialect) == shown
    assert parse(shown, dialect) == name


def test_case_insensitive_identity() -> None:
    assert parse("Gemma3:270M").key == parse("gemma3:270m").key
    assert parse("Gemma3:270M") != parse("gemma3:270m")  # spelling is kept for display


def test_candidates_try_the_dialect_first_then_the_other() -> None:
    got = [str(n) for n in candidates("smollm2", DMR)]
    assert got == ["docker.io/ai/smollm2:latest", "registry.ollama.ai/library/smollm2:latest"]


def test_every_part_is_a_safe_path_component() -> None:
    name = parse("hf.co/org/repo:Q4_K_M")
    for part in (name.host, name.namespace, name.model, name.tag):
        assert "/" not in part and part not in (".", "..")


@pytest.mark.parametrize(("value", "seconds"), [("-1", float("inf")), ("300", 300.0), ("5m", 300.0),
                                                ("0", 0.0), ("1h30m", 5400.0)])  # fmt: skip
def test_keep_alive_setting_accepts_seconds_and_durations(value: str, seconds: float) -> None:
    from modelrunner.durations import parse_keep_alive
    from modelrunner.settings import Settings

    assert parse_keep_alive(Settings(keep_alive=value).keep_alive, lenient=True) == seconds


def test_bad_keep_alive_setting_fails_at_startup() -> None:
    from pydantic import ValidationError

    from modelrunner.settings import Settings

    with pytest.raises(ValidationError, match="invalid duration"):
        Settings(keep_alive="soon")
