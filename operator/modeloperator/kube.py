"""Kubernetes API I/O for the operator (kubernetes_asyncio's dynamic client)."""

from __future__ import annotations

import contextlib
from typing import Any

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.dynamic import DynamicClient

from modeloperator import GROUP, VERSION

FIELD_MANAGER = "modeloperator"
API_VERSION = f"{GROUP}/{VERSION}"


async def api_client() -> client.ApiClient:
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        await config.load_kube_config()
    return client.ApiClient()


class KubeError(Exception):
    """The API server refused a request."""


def owner_reference(owner: dict[str, Any]) -> dict[str, Any]:
    meta = owner["metadata"]
    return {
        "apiVersion": owner.get("apiVersion", API_VERSION),
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


class Kube:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self._dynamic: DynamicClient | None = None

    async def dynamic(self) -> DynamicClient:
        if self._dynamic is None:
            self._dynamic = await DynamicClient(self.api)
        return self._dynamic

    async def _resource(self, api_version: str, kind: str) -> Any:
        return await (await self.dynamic()).resources.get(api_version=api_version, kind=kind)

    async def apply(
        self, obj: dict[str, Any], owner: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Server-side apply: our fields are ours, other managers' fields stay theirs."""
        body = dict(obj, metadata=dict(obj["metadata"]))
        if owner is not None:
            body["metadata"]["ownerReferences"] = [owner_reference(owner)]
        resource = await self._resource(body["apiVersion"], body["kind"])
        result = await (await self.dynamic()).server_side_apply(
            resource, body=body, name=body["metadata"]["name"],
            namespace=body["metadata"].get("namespace"),
            field_manager=FIELD_MANAGER, force_conflicts=True,
        )  # fmt: skip
        applied = dict(result.to_dict())
        if applied.get("kind") == "Status" and applied.get("status") == "Failure":
            # The dynamic client returns a refused apply as a Status instead of raising.
            raise KubeError(
                f"apply {body['kind']}/{body['metadata']['name']}: {applied.get('message')}"
            )
        return applied

    async def get(
        self, api_version: str, kind: str, name: str, namespace: str
    ) -> dict[str, Any] | None:
        resource = await self._resource(api_version, kind)
        try:
            found = await (await self.dynamic()).get(resource, name=name, namespace=namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        data = dict(found.to_dict())
        if data.get("kind") == "Status" and kind != "Status":  # a failure, not the object
            if data.get("code") == 404:
                return None
            raise KubeError(str(data.get("message") or data))
        return data

    async def list_objects(
        self, api_version: str, kind: str, namespace: str, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        resource = await self._resource(api_version, kind)
        kwargs: dict[str, Any] = {"namespace": namespace}
        if label_selector:
            kwargs["label_selector"] = label_selector
        found = await (await self.dynamic()).get(resource, **kwargs)
        return [dict(item) for item in found.to_dict().get("items", [])]

    async def delete(self, api_version: str, kind: str, name: str, namespace: str) -> None:
        resource = await self._resource(api_version, kind)
        with contextlib.suppress(ApiException):
            await (await self.dynamic()).delete(resource, name=name, namespace=namespace)

    async def patch_status(
        self, plural: str, namespace: str, name: str, status: dict[str, Any]
    ) -> None:
        api = client.CustomObjectsApi(self.api)
        try:
            await api.patch_namespaced_custom_object_status(  # type: ignore[call-arg]
                GROUP, VERSION, namespace, plural, name, {"status": status},
                _content_type="application/merge-patch+json",
            )  # fmt: skip
        except ApiException as exc:
            if exc.status != 404:  # the object is gone: nothing left to report on
                raise

    async def patch_pod_condition(
        self, name: str, namespace: str, condition: dict[str, Any]
    ) -> None:
        """Set one condition on a pod's status (a strategic merge keyed by type: the kubelet's
        own conditions stay as they are)."""
        api = client.CoreV1Api(self.api)
        body = {"status": {"conditions": [condition]}}
        try:
            # A dict body goes as a strategic merge patch (the client's choice for PATCH).
            await api.patch_namespaced_pod_status(name, namespace, body)
        except ApiException as exc:
            if exc.status != 404:  # the pod is gone: its successor gets its own condition
                raise

    async def secret(self, name: str, namespace: str) -> dict[str, Any] | None:
        """A Secret by name (None if absent); KubeError when the operator may not read it."""
        try:
            return await self.get("v1", "Secret", name, namespace)
        except ApiException as exc:
            raise KubeError(f"reading Secret {name!r}: {exc.reason}") from None
        except KubeError as exc:
            raise KubeError(f"reading Secret {name!r}: {exc}") from None

    async def create(self, obj: dict[str, Any], owner: dict[str, Any]) -> bool:
        """Create ``obj`` owned by ``owner``; False when it exists already (left as it is)."""
        body = dict(obj, metadata=dict(obj["metadata"], ownerReferences=[owner_reference(owner)]))
        resource = await self._resource(body["apiVersion"], body["kind"])
        what = f"create {body['kind']}/{body['metadata']['name']}"
        try:
            result = await (await self.dynamic()).create(
                resource, body=body, namespace=body["metadata"].get("namespace")
            )
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise KubeError(f"{what}: {exc.reason}") from None
        created = dict(result.to_dict())
        if created.get("kind") == "Status" and created.get("status") == "Failure":
            if created.get("code") == 409:  # a refusal may come back as a Status, not raised
                return False
            raise KubeError(f"{what}: {created.get('message')}")
        return True

    async def models(self, namespace: str) -> list[dict[str, Any]]:
        return await self.list_objects(API_VERSION, "Model", namespace)

    async def runners(self, namespace: str) -> list[dict[str, Any]]:
        return await self.list_objects(API_VERSION, "ModelRunner", namespace)
