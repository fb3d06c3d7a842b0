"""A schema-driven HTTP fuzzer over every route the runner app declares.

The routes come from the FastAPI app itself (``app.openapi()``), so a new route is fuzzed without
touching this file; :data:`SEEDS` gives each route family a valid body to mutate (a route with no
seed gets a generic one, and :func:`unseeded` lets a test insist that every POST has one).
Mutations: fields dropped, replaced by values of the wrong type, huge numbers, NaN/Infinity and
numbers past float range spelled as raw JSON, long strings within the body limit, nesting up to
and past the depth limit, unknown fields, malformed JSON, odd content types and headers, odd path
parameters and query strings. Every answer is checked: no 5xx (but a 502 from a route that reaches
a registry, which here is a closed loopback port), a 4xx in the shape of the path's dialect, and
the store byte-for-byte as before unless a state-changing route said yes.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from modelrunner.security.dialect import dialect_of
from modelrunner.security.routes import Access, classify

RAW = "\u0000raw\u0000"  # placeholder for a value spelled as raw JSON text after dumping
RAW_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1" + "0" * 400, "-0", "1e-999"]
# Names that can only point at loopback, so a fuzzed pull or push never leaves the machine even
# without the runner's proxy guard (RunnerProcess adds that guard too).
UNREACHABLE = "127.0.0.1:9/fuzz/model:latest"
HI = [{"role": "user", "content": "hi"}]
DIGEST = "sha256:" + "0" * 64

SEEDS: list[tuple[str, str, dict[str, Any] | None]] = [
    # (method, regex on the path template, valid body; None: no body)
    ("POST", r"/api/pull$", {"model": UNREACHABLE, "insecure": True, "stream": False}),
    ("POST", r"/api/push$", {"model": UNREACHABLE, "insecure": True, "stream": False}),
    ("POST", r"/api/create$", {"model": "fuzzed", "from": "tiny", "stream": False,
                               "system": "s", "parameters": {"temperature": 0.5}}),
    ("POST", r"/api/copy$", {"source": "tiny", "destination": "fuzzed"}),
    ("DELETE", r"/api/delete$", {"model": "fuzzed"}),
    ("POST", r"/api/show$", {"model": "tiny", "verbose": True}),
    ("POST", r"/api/generate$", {"model": "tiny", "prompt": "hi", "stream": False,
                                 "options": {"num_predict": 4, "temperature": 0.2},
                                 "format": {"type": "object"}}),
    ("POST", r"/api/chat$", {"model": "tiny", "messages": HI, "stream": True,
                             "options": {"num_predict": 4}, "think": False,
                             "tools": [{"type": "function", "function": {
                                 "name": "f", "parameters": {"type": "object"}}}]}),
    ("POST", r"/api/embed$", {"model": "tiny", "input": ["a", "b"], "truncate": True}),
    ("POST", r"/api/embeddings$", {"model": "tiny", "prompt": "a"}),
    ("POST", r"/api/blobs/\{digest\}$", None),
    ("POST", r"/chat/completions$", {"model": "tiny", "messages": HI, "max_tokens": 4,
                                     "stream": True, "stream_options": {"include_usage": True},
                                     "response_format": {"type": "json_object"}, "n": 1,
                                     "logprobs": True, "top_logprobs": 2, "stop": ["x"]}),
    ("POST", r"/v1/completions$", {"model": "tiny", "prompt": "hi", "max_tokens": 4, "seed": 1}),
    ("POST", r"/embeddings$", {"model": "tiny", "input": "a", "encoding_format": "float"}),
    ("POST", r"/responses$", {"model": "tiny", "input": "hi", "max_output_tokens": 4,
                              "store": True, "text": {"format": {"type": "text"}}}),
    ("POST", r"/messages$", {"model": "tiny", "max_tokens": 4, "messages": HI, "system": "s",
                             "stream": False, "temperature": 0.5}),
    ("POST", r"/messages/count_tokens$", {"model": "tiny", "messages": HI}),
    ("POST", r"/tokenize$", {"model": "tiny", "content": "hello", "with_pieces": True}),
    ("POST", r"/detokenize$", {"model": "tiny", "tokens": [5, 6, 7]}),
    ("POST", r"/(rerank|reranking)$", {"model": "rank", "query": "q", "documents": ["a", "b"],
                                       "top_n": 1}),
    ("POST", r"/score$", {"model": "rank", "text_1": "a", "text_2": ["b", "c"]}),
    ("POST", r"/models/create$", {"from": UNREACHABLE}),
    ("POST", r"/models/\{name\}/push$", None),
    ("POST", r"/models/\{name\}/tag$", None),
    ("POST", r"/models/\{name\}/repackage$", {"target": "fuzzed", "context_size": 256}),
    ("POST", r"/models/load$", None),
    ("DELETE", r"/models/purge$", None),
    ("DELETE", r"/models/\{name\}$", None),
    ("POST", r"/engines/unload$", {"models": ["tiny"]}),
    ("POST", r"/_configure$", {"model": "tiny", "context-size": 256}),
    ("POST", r"/engines/(un)?install-backend$", {"backend": "llama.cpp"}),
    ("DELETE", r"/responses/\{response_id\}$", None),
]  # fmt: skip

WEIRD: list[Any] = [
    None, True, False, 0, -1, 1.5, 2**31, 2**63, -(2**63) - 1, 10**30, 1e308, -1e308, "", " ",
    "\u0000", "💥" * 50, "../../etc/passwd", "/etc/passwd", DIGEST, "sha256:bad", "tiny",
    "a" * 5000, [], [None], [1, "a", {}], {}, {"a": []}, {"type": "object"}, {"type": [None]},
    list(range(500)), [{"role": "user"}], [{"role": 5, "content": [{"type": "x"}]}],
]  # fmt: skip
CONTENT_TYPES = ["text/plain", "multipart/form-data; boundary=x", "application/json; charset=utf-16",
                 "application/x-www-form-urlencoded", "application/octet-stream", "*/*", "\u00e9"]  # fmt: skip
PATH_VALUES = ["tiny", "tiny:latest", "nope", "a" * 3000, "%00", "%2e%2e/%2e%2e/etc", "..",
               "x%20y", "%F0%9F%92%A5", "sha256:" + "f" * 64, "sha256:../x", "ai/tiny:1", "::"]  # fmt: skip
QUERIES = ["", "?stream=maybe", "?force=yes", "?force=true", "?remote=nope", "?repo=fuzzed&tag=v1",
           "?repo=../x&tag=1", "?repo=a&tag=" + "t" * 300, "?x=%00", "?tag=&repo="]  # fmt: skip


@dataclass(frozen=True)
class Route:
    method: str
    template: str


def routes(app: Any) -> list[Route]:
    """Every (method, path) the app declares, HEAD apart (it is GET without a body)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # HEAD+GET routes share an operation id
        paths = app.openapi()["paths"]
    return [
        Route(method.upper(), template)
        for template, operations in paths.items()
        for method in operations
        if method.upper() != "HEAD"
    ]


def seed_for(route: Route) -> dict[str, Any] | None:
    for method, pattern, body in SEEDS:
        if method == route.method and re.search(pattern, route.template):
            return body
    return None


def unseeded(all_routes: list[Route]) -> list[Route]:
    """Body-taking routes with no seed: each should get one, or the fuzzer only sends junk."""
    return [r for r in all_routes if r.method == "POST" and seed_for(r) is None
            and not any(r.method == m and re.search(p, r.template) for m, p, _ in SEEDS)]  # fmt: skip


@dataclass
class Request:
    method: str
    path: str
    body: bytes | None
    headers: dict[bytes, bytes]
    note: str


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path inside a JSON value, the root included."""
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def _set(root: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    node = root
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return root


def _nest(depth: int, rng: random.Random) -> str:
    """``depth`` levels of arrays or objects, as JSON text."""
    opens = [rng.choice(["[", '{"k":']) for _ in range(depth)]
    closes = ["]" if o == "[" else "}" for o in reversed(opens)]
    return "".join(opens) + rng.choice(["1", '"x"', "null"]) + "".join(closes)


def _dump(body: Any, raw: str) -> bytes:
    return json.dumps(body).replace(json.dumps(RAW), raw).encode()


def mutate(seed: dict[str, Any] | None, rng: random.Random) -> tuple[bytes | None, str]:
    """One mutated body of ``seed`` and a note of what was done."""
    body: Any = json.loads(json.dumps(seed if seed is not None else {"model": "tiny"}))
    kind = rng.choice(["valid", "drop", "weird", "weird", "weird", "raw", "unknown", "nest",
                       "long", "malformed", "toplevel", "multi"])  # fmt: skip
    raw = "null"
    if kind == "valid":
        pass
    elif kind == "drop" and isinstance(body, dict) and body:
        key = rng.choice(sorted(body))
        del body[key]
        kind = f"drop {key}"
    elif kind in ("weird", "multi", "raw", "nest", "long"):
        for _ in range(rng.randint(2, 4) if kind == "multi" else 1):
            path = rng.choice(_paths(body)[1:] or [("model",)])
            value: Any
            if kind == "raw":
                raw, value = rng.choice(RAW_NUMBERS), RAW
            elif kind == "nest":  # as text: the encoder itself would recurse too deep
                raw, value = _nest(rng.choice([5, 30, 62, 63, 64, 65, 200, 5000]), rng), RAW
            elif kind == "long":
                value = rng.choice(["x", "💥", "\\"]) * rng.choice([10_000, 100_000])
            else:
                value = copy.deepcopy(rng.choice(WEIRD))
            body = _set(body, path, value)
            kind = f"{kind} {'/'.join(map(str, path))}"
    elif kind == "unknown" and isinstance(body, dict):
        body[rng.choice(["zzz", "options", "__proto__", "", "model\u0000"])] = rng.choice(WEIRD)
    elif kind == "malformed":
        text = json.dumps(body).encode()
        choice = rng.choice(["truncate", "garbage", "bytes", "bom", "empty", "single"])
        data = {
            "truncate": text[: rng.randint(0, max(len(text) - 1, 0))],
            "garbage": text + b"}{,",
            "bytes": text.replace(b'"', b"\xff", 1),
            "bom": b"\xef\xbb\xbf" + text,
            "empty": b"",
            "single": text.replace(b'"', b"'"),
        }[choice]
        return data, f"malformed {choice}"
    elif kind == "toplevel":
        return rng.choice([b"null", b"[]", b"1", b'"s"', b"true", b"[{}]"]), "top-level"
    if isinstance(body, dict) and "stream" in body and rng.random() < 0.3:
        body["stream"] = not body["stream"]
    return _dump(body, raw), kind


def concrete(template: str, rng: random.Random, mangle: bool) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1).split(":")[0]
        if mangle:
            return rng.choice(PATH_VALUES)
        return {"backend": "llama.cpp", "digest": DIGEST, "response_id": "resp_fuzz"}.get(
            name, "tiny"
        )

    path = re.sub(r"\{([^}]+)\}", value, template)
    if path.startswith(("/models", "/engines")) and rng.random() < 0.15:
        path = "/exp/vDD4.40" + path  # DMR's versioned prefix
    return path


def request_for(route: Route, rng: random.Random) -> Request:
    mangle = "{" in route.template and rng.random() < 0.3
    path = concrete(route.template, rng, mangle)
    if rng.random() < 0.2:
        path += rng.choice(QUERIES)
    headers: dict[bytes, bytes] = {}  # bytes: latin-1 values reach the server as sent
    if rng.random() < 0.15:
        headers[b"Content-Type"] = rng.choice(CONTENT_TYPES).encode("latin-1")
    if rng.random() < 0.05:
        headers[rng.choice([b"Accept", b"Content-Encoding", b"X-Request-Origin"])] = rng.choice(
            ["gzip", "text/event-stream", "\u00e9\u00e9", "x" * 2000]
        ).encode("latin-1")
    body: bytes | None = None
    note = "no body"
    if route.method in ("POST", "DELETE", "PUT", "PATCH"):
        body, note = mutate(seed_for(route), rng)
    return Request(route.method, path, body, headers, f"{route.template}: {note}")


# What the router itself answers before any dialect: Ollama's (Go's) 404 page for no route, and
# the plain 405 for a path like ``/responses/..`` that normalizes to one without that method.
ROUTER_ANSWERS = {(404, "404 page not found"), (405, "Method Not Allowed")}
_LLAMA_SERVER = re.compile(r"/(tokenize|detokenize|rerank|reranking|score)$")


def _shapes(path: str) -> set[str]:
    """The error shapes a path may answer in: its dialect's; llama-server's JSON or DMR's text
    where DMR routes to a backend (DMR's router answers its own checks as text); Anthropic's on
    a Messages path whatever prefix it has."""
    route = _route_path(path)
    shapes = {dialect_of(route)}
    if _LLAMA_SERVER.search(route) or route.startswith("/engines/"):
        shapes |= {"dmr", "llama-server"}
    if re.search(r"/messages(/count_tokens)?$", route):
        shapes.add("anthropic")
    return shapes


def _shape_ok(shape: str, response: httpx.Response, body: Any) -> bool:
    error = body.get("error") if isinstance(body, dict) else None
    if shape == "dmr":
        return response.headers.get("content-type", "").startswith("text/plain") and bool(
            response.text
        )
    if shape == "ollama":
        return isinstance(error, str)
    if shape == "openai":
        return isinstance(error, dict) and {"message", "type", "param", "code"} <= set(error)
    if shape == "llama-server":
        return isinstance(error, dict) and {"code", "message", "type"} <= set(error)
    return (isinstance(body, dict) and body.get("type") == "error" and isinstance(error, dict)
            and "message" in error)  # fmt: skip


def shape_problem(response: httpx.Response, path: str) -> str | None:
    """Why an error answer is not in a shape of ``path``'s dialect; None when it is."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if (response.status_code, response.text) in ROUTER_ANSWERS:
        return None  # a mangled path that no route (or no route with this method) matches
    shapes = _shapes(path)
    if any(_shape_ok(shape, response, body) for shape in shapes):
        return None
    return f"not in the shape of {'/'.join(sorted(shapes))}"


def allowed_5xx(response: httpx.Response, path: str) -> bool:
    """The 5xx answers that are no failure: a 502 from a route that reaches a registry (here a
    closed port), and llama-server's 501 for a feature the model lacks (no rank head)."""
    if response.status_code == 502:
        return _reaches_out(path)
    if response.status_code == 501 and _LLAMA_SERVER.search(_route_path(path)):
        return '"not_supported_error"' in response.text
    return False


def store_digest(store: Path) -> str:
    """Manifests by content and every other file by name and size: what a listing would show."""
    digest = hashlib.sha256()
    for path in sorted(p for p in store.rglob("*") if p.is_file()):
        relative = str(path.relative_to(store))
        digest.update(relative.encode())
        if "manifests" in path.parts:
            digest.update(path.read_bytes())
        else:
            digest.update(str(path.stat().st_size).encode())
    return digest.hexdigest()


@dataclass
class FuzzResult:
    requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def server_errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status >= 500)


def _route_path(path: str) -> str:
    """The path the runner routes by: no query, no DMR version prefix."""
    return re.sub(r"^/exp/vDD4\.40", "", path.split("?")[0])


def reseeder(models: dict[str, Path]) -> Callable[[httpx.Client], None]:
    """Puts back each ``name: gguf`` the fuzz needs (after a delete or purge said yes)."""

    def reseed(http: httpx.Client) -> None:
        for name, gguf in models.items():
            if http.post("/api/show", json={"model": name}).status_code == 200:
                continue
            data = gguf.read_bytes()
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            assert http.post(f"/api/blobs/{digest}", content=data).status_code in (200, 201)
            body = {"model": name, "files": {gguf.name: digest}, "stream": False}
            created = http.post("/api/create", json=body)
            assert created.status_code == 200, created.text

    return reseed


def _reaches_out(path: str) -> bool:
    return bool(re.search(r"/(pull|push|create)$", _route_path(path))) or "remote=" in path


def fuzz(base_url: str, all_routes: list[Route], count: int, seed: int, store: Path,
         reseed: Callable[[httpx.Client], None], timeout: float = 30) -> FuzzResult:  # fmt: skip
    """Send ``count`` fuzzed requests, round-robin over the routes in a seeded random order."""
    rng = random.Random(seed)
    result = FuzzResult()
    started = time.monotonic()
    with httpx.Client(base_url=base_url, timeout=timeout) as http:
        reseed(http)
        baseline = store_digest(store)
        order = list(all_routes)
        for index in range(count):
            if index % len(order) == 0:
                rng.shuffle(order)
            route = order[index % len(order)]
            request = request_for(route, rng)
            try:
                response = http.request(request.method, request.path, content=request.body,
                                        headers=request.headers)  # fmt: skip
            except httpx.HTTPError as exc:
                result.failures.append(f"{request.note}: {type(exc).__name__} {exc}")
                continue
            result.requests += 1
            status = response.status_code
            result.statuses[status] = result.statuses.get(status, 0) + 1
            where = f"{request.method} {request.path[:120]} ({request.note}) -> {status}"
            if status >= 500 and not allowed_5xx(response, request.path):
                result.failures.append(f"{where}: {response.text[:300]}")
            elif 400 <= status < 500 and (problem := shape_problem(response, request.path)):
                result.failures.append(f"{where}: {problem}: {response.text[:200]}")
            changes = classify(request.method, _route_path(request.path)) is Access.MANAGEMENT
            if changes and status < 300:
                reseed(http)
                baseline = store_digest(store)
            elif store_digest(store) != baseline:
                result.failures.append(f"{where}: the store changed")
                reseed(http)
                baseline = store_digest(store)
    result.seconds = time.monotonic() - started
    return result
