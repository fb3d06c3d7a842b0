"""Answers the gateway composes itself: model lists merged over every healthy instance
(deduplicated), the liveness and version routes, /metrics and the demand document."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
from starlette.responses import JSONResponse, PlainTextResponse, Response

from modelrunner import __version__
from modelrunner.gateway.health import Health
from modelrunner.gateway.proxy import Upstream
from modelrunner.gateway.shapes import dialect_of, error_for
from modelrunner.gateway.sources import Routes
from modelrunner.gateway.table import Instance

OLLAMA_COMPAT_VERSION = "0.13.5"  # what the runner reports; Ollama clients gate features on it


def _dedupe(items: list[Any], key: Callable[[dict[str, Any]], Any]) -> list[Any]:
    seen: dict[Any, Any] = {}
    for item in items:
        if isinstance(item, dict):
            seen.setdefault(key(item), item)
    return list(seen.values())


def _union_tags(items: list[Any]) -> list[Any]:
    """DMR lists a model once per digest with all its tags: the same digest on two instances
    (tagged differently) is one entry carrying both instances' tags."""
    tags: dict[Any, list[str]] = {}
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("tags"), list):
            known = tags.setdefault(item.get("id"), [])
            known.extend(t for t in item["tags"] if t not in known)
    return [
        {**item, "tags": tags[item.get("id")]}
        if isinstance(item, dict) and tags.get(item.get("id"))
        else item
        for item in items
    ]


# path -> (how to find the list in an answer, the identity that deduplicates, how to wrap it)
def _ollama(items: list[Any]) -> Any:
    return {"models": items}


def _openai(items: list[Any]) -> Any:
    return {"object": "list", "data": items}


def _plain(items: list[Any]) -> Any:
    return items


_MERGES: dict[str, tuple[Callable[[Any], list[Any]], Callable[[dict[str, Any]], Any], Any]] = {
    "ollama": (lambda d: d.get("models") or [], lambda m: m.get("name"), _ollama),
    "openai": (lambda d: d.get("data") or [], lambda m: m.get("id"), _openai),
    "dmr-models": (lambda d: d, lambda m: m.get("id"), _plain),
    "dmr-ps": (lambda d: d, lambda m: m.get("model_name"), _plain),
}


def merge_kind(path: str) -> str | None:
    if path in ("/api/tags", "/api/ps"):
        return "ollama"
    if path == "/models":
        return "dmr-models"
    if path == "/engines/ps":
        return "dmr-ps"
    if path in ("/v1/models", "/engines/v1/models") or (
        path.startswith("/engines/") and path.endswith("/v1/models") and path.count("/") == 4
    ):
        return "openai"
    return None


class Views:
    def __init__(self, routes: Routes, health: Health, upstream: Upstream) -> None:
        self.routes, self.health, self.upstream = routes, health, upstream

    def _instances(self) -> list[Instance]:
        unique: dict[str, Instance] = {}
        for instance in self.routes.table.instances:
            if self.health.ok(instance.url):
                unique.setdefault(instance.url, instance)
        return list(unique.values())

    async def _fetch(self, instance: Instance, path: str, query: str) -> Any:
        headers = self.upstream.auth_headers(instance)
        try:
            response = await self.upstream.client.get(
                instance.url + path, params=query or None, headers=headers, timeout=10.0
            )
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            self.health.eject(instance.url, f"GET {path}: {exc!r}")
            return None
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return response
        try:
            return response.json()
        except ValueError:
            return None

    async def merged(self, path: str, query: str) -> Response:
        kind = merge_kind(path)
        assert kind is not None
        pick, identity, wrap = _MERGES[kind]
        answers = await asyncio.gather(*(self._fetch(i, path, query) for i in self._instances()))
        items: list[Any] = []
        for answer in answers:
            if isinstance(answer, httpx.Response):
                if answer.status_code == 404:  # e.g. an unknown /engines/<backend>: say so
                    return Response(
                        answer.content, 404, media_type=answer.headers.get("content-type")
                    )
                continue
            try:
                items.extend(pick(answer) if answer is not None else [])
            except (AttributeError, TypeError):
                continue
        if kind == "dmr-models":
            items = _union_tags(items)
        return JSONResponse(wrap(_dedupe(items, identity)))


def root() -> Response:
    return PlainTextResponse("Ollama is running")


def version(path: str) -> Response:
    if path == "/version":
        return JSONResponse({"version": __version__})
    return JSONResponse({"version": OLLAMA_COMPAT_VERSION, "modelrunner": __version__})


def not_found_page(path: str) -> Response:
    """An unknown path, as the runner answers it (Go's mux text, or the JSON dialects' 404)."""
    if dialect_of(path) in ("openai", "anthropic"):
        return error_for(path, 404, "404 page not found")
    return PlainTextResponse("404 page not found", 404)
