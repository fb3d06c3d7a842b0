"""What each path is at the gateway: an inference route (model in the JSON body), a lookup of one
model, a merged list, a Responses id, a local answer, a refused management route, or unknown."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from urllib.parse import unquote

from modelrunner.gateway.views import merge_kind
from modelrunner.security.routes import Access, classify

_ENGINES = r"(/engines(/[^/]+)?)?"
# (pattern, whether the conversation's prefix picks the instance)
_INFERENCE: list[tuple[re.Pattern[str], bool]] = [
    (re.compile(r"^/api/(generate|chat)$"), True),
    (re.compile(r"^/api/(embed|embeddings)$"), False),
    (re.compile(rf"^{_ENGINES}/v1/(chat/completions|completions)$"), True),
    (re.compile(rf"^{_ENGINES}/v1/embeddings$"), False),
    (re.compile(rf"^{_ENGINES}(/v1)?/responses$"), True),
    (re.compile(rf"^(/anthropic|{_ENGINES})/v1/messages$"), True),
    (re.compile(rf"^(/anthropic|{_ENGINES})/v1/messages/count_tokens$"), False),
    (re.compile(rf"^{_ENGINES}/(tokenize|detokenize)$"), False),
    (re.compile(rf"^{_ENGINES}(/v1)?/(rerank|reranking|score)$"), False),
]
_RESPONSE_ID = re.compile(rf"^{_ENGINES}(/v1)?/responses/(?P<id>[^/]+)(/input_items)?$")
_OPENAI_MODEL = re.compile(rf"^{_ENGINES}/v1/models/(?P<name>.+)$")
_DMR_MODEL = re.compile(r"^/models/(?P<name>.+)$")
_ANY_INSTANCE = {"/engines/status"}


class Kind(Enum):
    INFERENCE = "inference"
    SHOW = "show"
    MODEL = "model"  # GET one model by the name in the path
    LIST = "list"
    RESPONSE = "response"  # a stored Response, by id
    ANY = "any"  # any healthy instance answers
    ROOT = "root"
    VERSION = "version"
    METRICS = "metrics"
    DEMAND = "demand"
    REFUSED = "refused"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Route:
    kind: Kind
    affinity: bool = False
    name: str | None = None  # the model or response id the path names


def route_of(method: str, path: str) -> Route:
    get = method in ("GET", "HEAD")
    if get and path == "/":
        return Route(Kind.ROOT)
    if get and path in ("/api/version", "/version"):
        return Route(Kind.VERSION)
    if method == "GET" and path == "/metrics":
        return Route(Kind.METRICS)
    if method == "GET" and path == "/gateway/v1/demand":
        return Route(Kind.DEMAND)
    if classify(method, path) is Access.MANAGEMENT:
        return Route(Kind.REFUSED)
    if method == "POST":
        for pattern, affinity in _INFERENCE:
            if pattern.match(path):
                return Route(Kind.INFERENCE, affinity)
        if path == "/api/show":
            return Route(Kind.SHOW)
    if method in ("GET", "DELETE") and (found := _RESPONSE_ID.match(path)):
        return Route(Kind.RESPONSE, name=found.group("id"))
    if method != "GET":
        return Route(Kind.UNKNOWN)
    if path in _ANY_INSTANCE:
        return Route(Kind.ANY)
    if merge_kind(path) is not None:
        return Route(Kind.LIST)
    if found := _OPENAI_MODEL.match(path):
        return Route(Kind.MODEL, name=unquote(found.group("name")))
    if found := _DMR_MODEL.match(path):
        name = unquote(found.group("name"))
        if name.endswith("/export"):
            return Route(Kind.REFUSED)
        return Route(Kind.MODEL, name=name)
    return Route(Kind.UNKNOWN)
