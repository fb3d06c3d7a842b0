"""The ``modelrunner`` CLI against a live server, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.server import LiveServer


def cli(
    runner: LiveServer, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, MODEL_RUNNER_HOST=runner.url)
    return subprocess.run(
        [sys.executable, "-m", "modelrunner.cli", *args],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=120, check=False,
    )  # fmt: skip


def test_create_list_show_copy_remove(runner: LiveServer, tiny_gguf: Path, tmp_path: Path) -> None:
    (tmp_path / "Modelfile").write_text(
        f"FROM {tiny_gguf}\nSYSTEM You are a tiny model.\nPARAMETER temperature 0.2\n"
    )
    created = cli(runner, "create", "tiny", "-f", str(tmp_path / "Modelfile"))
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip().splitlines()[-1] == "success"
    listed = cli(runner, "list")
    assert listed.returncode == 0 and "tiny:latest" in listed.stdout
    shown = cli(runner, "show", "tiny", "--modelfile")
    assert "SYSTEM You are a tiny model." in shown.stdout
    assert "PARAMETER temperature 0.2" in shown.stdout
    assert cli(runner, "cp", "tiny", "tiny2").returncode == 0
    removed = cli(runner, "rm", "tiny")
    assert removed.returncode == 0 and "deleted 'tiny'" in removed.stdout
    names = cli(runner, "ls").stdout
    assert "tiny2:latest" in names and "tiny:latest" not in names


def test_errors_are_reported(runner: LiveServer) -> None:
    missing = cli(runner, "show", "nope")
    assert missing.returncode != 0 and "model 'nope' not found" in missing.stderr


def test_no_server(tmp_path: Path) -> None:
    env = dict(os.environ, MODEL_RUNNER_HOST="http://127.0.0.1:9")
    result = subprocess.run([sys.executable, "-m", "modelrunner.cli", "list"], capture_output=True,
                            text=True, env=env, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 1 and "could not connect" in result.stderr
