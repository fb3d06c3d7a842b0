"""The real node of the local cluster (hack/node/): a kubelet on containerd that runs pods built here,
Service DNS by name, and a network that keeps every packet on this machine."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tests.support.cluster import REPO_ROOT, Kubectl, wait_for
from tests.support.node import Images, RealNode, netns

pytestmark = pytest.mark.cluster


def node_object(kubectl: Kubectl, node: RealNode) -> dict[str, Any]:
    return dict(kubectl.json("get", "node", node.name))


def test_node_is_ready_and_matches_the_control_plane(kubectl: Kubectl, real_node: RealNode) -> None:
    node = node_object(kubectl, real_node)
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert ready["Ready"] == "True"
    info = node["status"]["nodeInfo"]
    assert info["containerRuntimeVersion"].startswith("containerd://")
    server = json.loads(kubectl("version", "-o", "json").stdout)["serverVersion"]["gitVersion"]
    assert info["kubeletVersion"] == server and info["kubeProxyVersion"] in ("", server)
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert addresses["InternalIP"] == "10.250.0.2"
    assert node["metadata"]["labels"]["modelrunner.io/node"] == "real"


def test_every_route_stays_on_this_machine(real_node: RealNode) -> None:
    """The node's namespace has no default route; the host's only new routes lead into it."""
    routes = netns(real_node, "ip", "-4", "route", "show").stdout
    assert routes.strip() and not any(line.startswith("default") for line in routes.splitlines())
    for line in routes.splitlines():
        assert line.split()[0] in ("10.250.0.0/24", "10.245.0.0/24"), line
    host = subprocess.run(["ip", "-4", "route", "show", "dev", "mrnode0"], capture_output=True,
                          text=True, check=True).stdout  # fmt: skip
    for line in host.splitlines():
        dst = line.split()[0]
        assert dst == "10.250.0.0/24" or (dst in ("10.245.0.0/24", "10.96.0.0/16")
                                          and "via 10.250.0.2" in line), line  # fmt: skip
    check = subprocess.run([str(REPO_ROOT / "hack" / "node" / "network.sh"), "check"],
                           capture_output=True, text=True, check=False)  # fmt: skip
    assert check.returncode == 0, check.stderr


def probe_job(name: str, image: str, script: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "nodeSelector": {"modelrunner.io/node": "real"},
                    "containers": [
                        {"name": "probe", "image": image, "command": ["python3", "-c", script]}
                    ],
                }
            },
        },
    }


WEB = """
import http.server, socketserver
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"hello from a pod"
        self.send_response(200); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
socketserver.TCPServer(("", 8080), H).serve_forever()
"""

PROBE = """
import socket, time, urllib.error, urllib.request
# kube-proxy programs a new Service within a second or so: until then the node has no route to it.
for attempt in range(60):
    try:
        body = urllib.request.urlopen("http://web/", timeout=10).read().decode()
        break
    except urllib.error.URLError as exc:
        print("waiting for the Service:", exc)
        time.sleep(0.5)
print("service:", body)
print("fqdn:", socket.gethostbyname("web.{ns}.svc.cluster.local"))
started = time.monotonic()
try:
    socket.getaddrinfo("example.com", 80)
    print("outside: resolved")
except socket.gaierror as exc:
    print("outside: refused", exc.errno, round(time.monotonic() - started, 2))
"""


def test_pods_serve_and_find_each_other_by_service_name(
    kubectl: Kubectl, namespace: str, local_images: Images
) -> None:
    """A pod from the local registry serves HTTP behind a Service; a Job reaches it as
    http://web/ through the cluster DNS, which answers nothing outside the cluster."""
    kubectl.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "web", "labels": {"app": "web"}},
                "spec": {
                    "nodeSelector": {"modelrunner.io/node": "real"},
                    "containers": [
                        {
                            "name": "web",
                            "image": local_images.runner,
                            "command": ["python3", "-c", WEB],
                            "ports": [{"containerPort": 8080}],
                            "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                        }
                    ],
                },
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "web"},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
            },
        ],
        namespace=namespace,
    )
    kubectl("wait", "--for=condition=Ready", "pod/web", "--timeout=300s", namespace=namespace,
            timeout=310)  # fmt: skip
    pod = kubectl.json("get", "pod", "web", namespace=namespace)
    assert pod["status"]["podIP"].startswith("10.245.0.")
    kubectl.apply(probe_job("probe", local_images.runner, PROBE.replace("{ns}", namespace)),
                  namespace=namespace)  # fmt: skip
    wait_for(
        lambda: (kubectl.json("get", "job", "probe", namespace=namespace).get("status") or {}).get(
            "succeeded"
        ),
        timeout=120,
        message=lambda: kubectl("logs", "job/probe", namespace=namespace, check=False).stdout,
    )
    logs = kubectl("logs", "job/probe", namespace=namespace).stdout
    service_ip = kubectl.json("get", "service", "web", namespace=namespace)["spec"]["clusterIP"]
    assert "service: hello from a pod" in logs
    assert f"fqdn: {service_ip}" in logs
    # NXDOMAIN from our own CoreDNS at once: no upstream resolver is ever asked.
    outside = next(line for line in logs.splitlines() if line.startswith("outside:"))
    assert outside.startswith("outside: refused"), logs
    assert float(outside.split()[-1]) < 2.0, logs
