"""`make up` and `make down` (hack/up.sh, hack/down.sh) on the session's cluster and its real node:
the operator comes from the chart and its image, the runner is a pod, the default model is Ready,
every call that up prints works (from this machine and from inside the cluster), a second `up`
changes nothing, and `down` (while pytest still uses the cluster) removes what up added."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import uuid

import pytest

from tests.e2e.conftest import ROOT
from tests.support.cluster import STARTED_BY_PYTEST, Kubectl
from tests.support.node import RealNode

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def limited(command: str) -> list[str]:
    """A printed curl command as argv (its JSON body checked, the reply kept short)."""
    argv = shlex.split(command)
    if "-d" in argv:
        i = argv.index("-d") + 1
        body = json.loads(argv[i])
        assert body["model"] == "gemma3"
        assert body.get("max_tokens") or body.get("options", {}).get("num_predict")
    return [*argv[:1], "-sf", "--max-time", "180", *argv[1:]]


def test_make_up_then_down(kubectl: Kubectl, real_node: RealNode) -> None:
    namespace = f"t-up-{uuid.uuid4().hex[:6]}"
    env = dict(os.environ, UP_NAMESPACE=namespace)
    owned_by_pytest = STARTED_BY_PYTEST.exists()

    def script(name: str, timeout: float, check: bool = True) -> str:
        proc = subprocess.run(["bash", str(ROOT / "hack" / name)], env=env, capture_output=True,
                              text=True, timeout=timeout, check=False)  # fmt: skip
        assert proc.returncode == 0 or not check, f"hack/{name}:\n{proc.stdout}\n{proc.stderr}"
        return f"exit {proc.returncode}\n{proc.stdout}{proc.stderr}"

    try:
        out = script("up.sh", timeout=1800)
        assert re.search(
            r"model\.modelrunner\.io/gemma3\s+\S+/library/gemma3:270m\s+True\s+Ready", out
        ), out
        assert "gemma3: " in out and "Up in " in out
        pods = kubectl.json("get", "pods", "-l", "app.kubernetes.io/instance=model-runner",
                            namespace=namespace)["items"]  # fmt: skip
        assert [p["spec"]["nodeName"] for p in pods] == [real_node.name]

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
        (in_cluster,) = [line.strip() for line in out.splitlines()
                         if line.strip().startswith("kubectl run")]  # fmt: skip
        argv = shlex.split(in_cluster.replace("$RANDOM", uuid.uuid4().hex[:5]))
        proc = subprocess.run([str(ROOT / ".cluster" / "bin" / "kubectl"), *argv[1:]],
                              capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert '"chat.completion"' in proc.stdout.replace(": ", ":").replace(
            '"object":"chat.completion"', '"chat.completion"'
        ), proc.stdout

        uid = pods[0]["metadata"]["uid"]
        again = script("up.sh", timeout=600)  # idempotent: the runner pod is the same
        assert "is in the registry" in again and "Up in " in again
        (pod,) = kubectl.json("get", "pods", "-l", "app.kubernetes.io/instance=model-runner",
                              namespace=namespace)["items"]  # fmt: skip
        assert pod["metadata"]["uid"] == uid
    finally:
        if owned_by_pytest:
            STARTED_BY_PYTEST.touch()
        down = script("down.sh", timeout=300, check=False)  # never mask a failure of up
    assert down.startswith("exit 0"), down
    assert "leaving it running" in down
    assert not kubectl.exists("namespace", "model-runner-system")
    assert not kubectl.exists("modelrunner", "model-runner", namespace=namespace)
