"""The routing table from a ConfigMap (key ``routes.json``), watched through the Kubernetes API with
plain httpx and the pod's service-account token: a get, then a watch from its resourceVersion with
a ``metadata.name`` field selector (so a Role scoped by resourceNames to this one ConfigMap is
enough); on any error or an expired version, list again after a short pause."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from modelrunner.gateway.sources import Routes
from modelrunner.gateway.table import Table, TableError, parse_table

log = logging.getLogger("modelrunner.gateway")
KEY = "routes.json"
WATCH_SECONDS = 290


@dataclass(frozen=True)
class KubeAccess:
    server: str
    token_file: Path
    ca_file: Path

    @classmethod
    def in_cluster(cls, account_dir: Path) -> KubeAccess:
        host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise RuntimeError(
                "--routes-configmap needs in-cluster config (KUBERNETES_SERVICE_HOST)"
            )
        host = f"[{host}]" if ":" in host else host
        return cls(f"https://{host}:{port}", account_dir / "token", account_dir / "ca.crt")

    def client(self) -> httpx.AsyncClient:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        return httpx.AsyncClient(
            base_url=self.server, verify=context, timeout=httpx.Timeout(10.0, read=None)
        )

    def headers(self) -> dict[str, str]:
        # Re-read each call: projected tokens rotate.
        return {"Authorization": f"Bearer {self.token_file.read_text().strip()}"}


class ConfigMapWatch:
    def __init__(self, access: KubeAccess, ref: str, routes: Routes) -> None:
        namespace, sep, name = ref.partition("/")
        if not sep or not namespace or not name:
            raise ValueError(f"--routes-configmap must be NAMESPACE/NAME, not {ref!r}")
        self.access, self.namespace, self.name, self._routes = access, namespace, name, routes
        self.path = f"/api/v1/namespaces/{namespace}/configmaps"

    def _apply(self, obj: dict[str, Any] | None) -> None:
        if obj is None:
            self._routes.update("configmap", Table())
            return
        raw = (obj.get("data") or {}).get(KEY)
        if raw is None:
            log.warning("ConfigMap %s/%s has no key %s", self.namespace, self.name, KEY)
            self._routes.update("configmap", Table())
            return
        try:
            self._routes.update("configmap", parse_table(json.loads(raw)))
        except (ValueError, TableError) as exc:
            log.warning(
                "routing table in ConfigMap %s/%s not used: %s", self.namespace, self.name, exc
            )

    async def _once(self, client: httpx.AsyncClient) -> None:
        response = await client.get(f"{self.path}/{self.name}", headers=self.access.headers())
        if response.status_code == 404:
            self._apply(None)
            version = ""
        else:
            response.raise_for_status()
            obj = response.json()
            self._apply(obj)
            version = obj["metadata"]["resourceVersion"]
        params = {
            "watch": "1",
            "fieldSelector": f"metadata.name={self.name}",
            "timeoutSeconds": str(WATCH_SECONDS),
            "allowWatchBookmarks": "true",
        }
        if version:
            params["resourceVersion"] = version
        headers = self.access.headers()
        async with client.stream("GET", self.path, params=params, headers=headers) as stream:
            stream.raise_for_status()
            async for line in stream.aiter_lines():
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    return  # e.g. 410 Gone: list again
                if kind in ("ADDED", "MODIFIED"):
                    self._apply(obj)
                elif kind == "DELETED":
                    self._apply(None)

    async def run(self) -> None:
        pause = 1.0
        async with self.access.client() as client:
            while True:
                try:
                    await self._once(client)
                    pause = 1.0
                except asyncio.CancelledError:
                    raise
                except (httpx.HTTPError, OSError, ValueError, KeyError) as exc:
                    log.warning("watching ConfigMap %s/%s: %r", self.namespace, self.name, exc)
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 10.0)
