"""Argo CD's health check of a kind, run as Argo CD runs it: the Lua script from
examples/05-gitops/argocd/argocd-cm.yaml with the object as the global ``obj``, under Lua 5.1
(Argo CD embeds gopher-lua, a Lua 5.1 implementation)."""

from __future__ import annotations

from functools import cache
from typing import Any

import lupa.lua51 as lua51

from tests.e2e.conftest import EXAMPLES, load_documents

ARGOCD_CM = EXAMPLES / "05-gitops" / "argocd" / "argocd-cm.yaml"


@cache
def scripts() -> dict[str, str]:
    """Health scripts by kind, from argocd-cm's resource.customizations.health.<group>_<kind>."""
    (cm,) = load_documents(ARGOCD_CM)
    prefix = "resource.customizations.health.modelrunner.io_"
    return {key.removeprefix(prefix): value for key, value in cm["data"].items()
            if key.startswith(prefix)}  # fmt: skip


def _to_lua(runtime: Any, value: Any) -> Any:
    if isinstance(value, dict):
        return runtime.table_from(
            {k: _to_lua(runtime, v) for k, v in value.items() if v is not None}
        )
    if isinstance(value, list):
        return runtime.table_from([_to_lua(runtime, v) for v in value])
    return value


def health(kind: str, obj: dict[str, Any]) -> dict[str, str]:
    """{"status": ..., "message": ...} as Argo CD would show it (JSON nulls are absent fields)."""
    runtime = lua51.LuaRuntime(unpack_returned_tuples=True)
    runtime.globals().obj = _to_lua(runtime, obj)
    result = runtime.execute(scripts()[kind])
    return {str(k): str(v) for k, v in result.items()}
