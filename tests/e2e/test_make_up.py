"""`make up` and `make down` (hack/up.sh, hack/down.sh), on a throwaway cluster of their own
(MODELRUNNER_CLUSTER_DIR and free CLUSTER_*_PORTs, as tests/cluster does), so the shared cluster
is never touched: the system comes up Ready, every call it prints works, a second `up` changes
nothing, and `down` leaves no process behind."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT
from tests.support.server import free_port

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def built() -> bool:
    return all(
        subprocess.run(
            ["bash", str(ROOT / "hack" / "cluster.sh"), "path", name],
            capture_output=True,
            check=False,
        ).returncode
        == 0
        for name in ("etcd", "kube-apiserver", "kubectl", "kwok")
    )


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def pids(cluster_dir: Path) -> dict[str, int]:
    files = [*(cluster_dir / "up").glob("*.pid"), *(cluster_dir / "run").glob("*.pid")]
    return {f.stem: int(f.read_text()) for f in files}


def limited(command: str) -> list[str]:
    """A printed curl command as argv (its JSON body checked, the reply kept short)."""
    argv = shlex.split(command)
    if "-d" in argv:
        i = argv.index("-d") + 1
        body = json.loads(argv[i])
        assert body["model"] == "gemma3"
        assert body.get("max_tokens") or body.get("options", {}).get("num_predict")
    return [*argv[:1], "-sf", "--max-time", "180", *argv[1:]]


def test_make_up_then_down(tmp_path: Path) -> None:
    if not built():
        pytest.skip("the cluster binaries are not built (hack/cluster.sh build)")
    cluster_dir = tmp_path / "cluster"
    env = dict(os.environ, MODELRUNNER_CLUSTER_DIR=str(cluster_dir),
               OLLAMA_PORT=str(free_port()), DMR_PORT=str(free_port()))  # fmt: skip
    for var in ("ETCD_PORT", "ETCD_PEER_PORT", "APISERVER_PORT", "KCM_PORT", "SCHEDULER_PORT"):
        env[f"CLUSTER_{var}"] = str(free_port())
    env.pop("KUBECONFIG", None)

    def script(name: str, timeout: float, check: bool = True) -> str:
        proc = subprocess.run(["bash", str(ROOT / "hack" / name)], env=env, capture_output=True,
                              text=True, timeout=timeout, check=False)  # fmt: skip
        assert proc.returncode == 0 or not check, f"hack/{name}:\n{proc.stdout}\n{proc.stderr}"
        return f"exit {proc.returncode}\n{proc.stdout}{proc.stderr}"

    try:
        out = script("up.sh", timeout=420)
        assert re.search(r"model\.modelrunner\.io/gemma3\s+gemma3:270m\s+True\s+Ready", out), out
        assert "gemma3: " in out and "Up in " in out
        running = pids(cluster_dir)
        assert {"runner", "operator", "etcd", "kube-apiserver", "kwok"} <= set(running)
        assert all(alive(pid) for pid in running.values())

        commands = [line.strip() for line in out.splitlines() if line.strip().startswith("curl ")]
        assert len(commands) == 4, out
        for command in commands:
            proc = subprocess.run(limited(command), capture_output=True, text=True, timeout=200,
                                  check=False)  # fmt: skip
            assert proc.returncode == 0, f"{command}: {proc.stderr}"
            reply = json.loads(proc.stdout)
            if "/api/chat" in command:
                assert reply["message"]["role"] == "assistant"
            elif "chat/completions" in command:
                assert reply["choices"][0]["message"]["role"] == "assistant"
            else:
                assert any("gemma3:latest" in " ".join(m["tags"]) for m in reply)

        again = script("up.sh", timeout=120)  # idempotent: nothing restarts
        assert "runner already running" in again and "operator already running" in again
        assert pids(cluster_dir) == running
    finally:
        started = pids(cluster_dir)
        down = script("down.sh", timeout=120, check=False)  # never mask a failure of up
    assert down.startswith("exit 0") and "stopped runner" in down and "stopped operator" in down
    assert not [name for name, pid in started.items() if alive(pid)]
    assert not cluster_dir.exists()
