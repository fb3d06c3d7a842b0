"""A dynamic provisioner for the local cluster's default StorageClass `local-path`.

For each claim of that class that the scheduler has placed (WaitForFirstConsumer sets
`volume.kubernetes.io/selected-node`), it makes a directory under VOLUMES and a `local`
PersistentVolume bound to the claim and pinned to that node; the kubelet applies the pod's fsGroup to
it, as on a real cluster. A released volume is deleted with its directory. Stdlib only: it talks to the
API server with its own client certificate (RBAC in hack/node/storage.sh).
"""

from __future__ import annotations

import argparse
import json
import shutil
import ssl
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

CLASS = "local-path"
PROVISIONER = "modelrunner.io/local-path"
SELECTED_NODE = "volume.kubernetes.io/selected-node"


class Api:
    def __init__(self, server: str, pki: Path, cert: str) -> None:
        self.server = server
        self.ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        self.ctx.load_cert_chain(str(pki / f"{cert}.crt"), str(pki / f"{cert}.key"))

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.server + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, context=self.ctx, timeout=10) as response:
            return json.loads(response.read() or b"{}")


def volume_for(claim: dict[str, Any], node: str, path: Path) -> dict[str, Any]:
    meta, spec = claim["metadata"], claim["spec"]
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": f"pvc-{meta['uid']}",
            "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER},
        },
        "spec": {
            "capacity": {"storage": spec["resources"]["requests"]["storage"]},
            "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": CLASS,
            "volumeMode": spec.get("volumeMode", "Filesystem"),
            "claimRef": {"namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"]},
            "local": {"path": str(path)},
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}
                            ]
                        }
                    ]
                }
            },
        },
    }


def provision(api: Api, volumes: Path) -> None:
    existing = {pv["metadata"]["name"] for pv in api.call("GET", "/api/v1/persistentvolumes")["items"]}
    for claim in api.call("GET", "/api/v1/persistentvolumeclaims")["items"]:
        meta = claim["metadata"]
        node = (meta.get("annotations") or {}).get(SELECTED_NODE)
        if claim["spec"].get("storageClassName") != CLASS or claim.get("status", {}).get("phase") != "Pending":
            continue
        if not node or claim["spec"].get("volumeName") or f"pvc-{meta['uid']}" in existing:
            continue
        path = volumes / f"pvc-{meta['uid']}"
        path.mkdir(parents=True, exist_ok=True)
        api.call("POST", "/api/v1/persistentvolumes", volume_for(claim, node, path))
        print(f"provisioned {path.name} for {meta['namespace']}/{meta['name']} on {node}", flush=True)


def reclaim(api: Api, volumes: Path) -> None:
    for pv in api.call("GET", "/api/v1/persistentvolumes")["items"]:
        annotations = pv["metadata"].get("annotations") or {}
        if annotations.get("pv.kubernetes.io/provisioned-by") != PROVISIONER:
            continue
        if pv.get("status", {}).get("phase") not in ("Released", "Failed"):
            continue
        path = Path(pv["spec"]["local"]["path"])
        if path.parent == volumes:  # never remove anything outside our own directory
            shutil.rmtree(path, ignore_errors=True)
        api.call("DELETE", f"/api/v1/persistentvolumes/{pv['metadata']['name']}")
        print(f"deleted {pv['metadata']['name']}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server", required=True)
    parser.add_argument("--pki", type=Path, required=True)
    parser.add_argument("--cert", default="provisioner")
    parser.add_argument("--volumes", type=Path, required=True)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    api = Api(args.server, args.pki, args.cert)
    volumes = args.volumes.resolve()
    volumes.mkdir(parents=True, exist_ok=True)
    while True:
        try:
            provision(api, volumes)
            reclaim(api, volumes)
        except (urllib.error.URLError, OSError, KeyError) as exc:
            print(f"retrying after: {exc}", file=sys.stderr, flush=True)
        time.sleep(args.interval)


if __name__ == "__main__":
    main()
