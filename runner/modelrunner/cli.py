"""``modelrunner``: serve the API, and manage models through a running server like ``ollama``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import httpx

from modelrunner.gateway import command as gateway_command
from modelrunner.settings import Settings, parse_listen

DEFAULT_HOST = "http://127.0.0.1:11434"
_EXAMPLES = """
Try it (Ollama, OpenAI and Docker Model Runner APIs, one model store):
  curl {url}/api/chat -d '{{"model": "gemma3:270m", "messages": [{{"role": "user", "content": "Hello"}}], "stream": false}}'
  curl {url}/v1/chat/completions -d '{{"model": "gemma3:270m", "messages": [{{"role": "user", "content": "Hello"}}]}}'
  curl {url}/engines/v1/models
"""


def _server_url() -> str:
    host = os.environ.get("MODEL_RUNNER_HOST", DEFAULT_HOST)
    return host if "://" in host else f"http://{host}"


def _auth_headers() -> dict[str, str]:
    """The management token for commands that change the store, when the server wants one."""
    token = os.environ.get("MODEL_RUNNER_MANAGEMENT_TOKEN", "").strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from modelrunner.app import create_app, default_engine
    from modelrunner.core.defaults import ensure_default_model
    from modelrunner.drain import (
        FLUSH_SECONDS,
        Drain,
        DrainingEngine,
        DrainingServer,
        exit_zero_on_sigterm,
    )
    from modelrunner.store.models import ModelStore

    overrides: dict[str, Any] = {}
    if args.listen:
        overrides["listen"] = args.listen
    if args.models:
        overrides["models"] = Path(args.models)
    if args.api_keys_file:
        overrides["api_keys_file"] = Path(args.api_keys_file)
    if args.management_token_file:
        overrides["management_token_file"] = Path(args.management_token_file)
    if args.allowed_host:
        overrides["allowed_hosts"] = args.allowed_host
    if args.max_loaded_models is not None:
        overrides["max_loaded_models"] = args.max_loaded_models
    if args.memory_budget is not None:
        overrides["memory_budget"] = args.memory_budget
    settings = Settings(**overrides)
    if args.default_model and ensure_default_model(ModelStore(settings.models)):
        print("imported the default model gemma3:270m", flush=True)
    sockets = []
    for address in settings.listen:
        host, port = parse_listen(address)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted sockets inherit it: uvicorn writes a response's head and body separately, and
        # with Nagle on, a kept-alive connection waited ~40 ms for the client's delayed ACK.
        if family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sockets.append(sock)
    # SIGTERM: refuse new connections, let requests finish for up to shutdown_timeout, then end
    # generations with an error line and cancel what remains (drain.py); exit status 0.
    drain = Drain()
    app = create_app(settings, engine=DrainingEngine(default_engine(settings), drain))
    if hasattr(signal, "SIGHUP"):  # re-read the API keys and management token files
        signal.signal(signal.SIGHUP, lambda *_: app.state.keys.reload(force=True))
    config = uvicorn.Config(
        app,
        log_level=settings.log_level,
        timeout_graceful_shutdown=int(settings.shutdown_timeout + FLUSH_SECONDS),
        # Room for the request line and headers the security middleware refuses with 414/431
        # in the caller's dialect (h11's own limit, 16 KiB by default, answers a bare 400).
        h11_max_incomplete_event_size=settings.max_url_length + settings.max_header_size + 1024,
    )
    server = DrainingServer(config, drain, settings.shutdown_timeout)
    exit_zero_on_sigterm()
    print("modelrunner listening on " + ", ".join(settings.listen), flush=True)
    if args.default_model:
        print(_EXAMPLES.format(url=f"http://{settings.listen[0]}"), flush=True)
    asyncio.run(server.serve(sockets=sockets))
    return 0


def _request(method: str, path: str, body: Any = None) -> httpx.Response:
    with httpx.Client(base_url=_server_url(), timeout=None, headers=_auth_headers()) as client:
        response = client.request(method, path, json=body)
    if response.status_code >= 400:
        try:
            message = response.json().get("error", response.text)
        except ValueError:
            message = response.text
        raise SystemExit(f"Error: {message}")
    return response


def list_models(_: argparse.Namespace) -> int:
    models = _request("GET", "/api/tags").json()["models"]
    print(f"{'NAME':<40} {'ID':<14} {'SIZE':>10}  MODIFIED")
    for m in models:
        size = f"{m['size'] / 1e6:.0f} MB"
        print(f"{m['name']:<40} {m['digest'][:12]:<14} {size:>10}  {m['modified_at'][:19]}")
    return 0


def show(args: argparse.Namespace) -> int:
    info = _request("POST", "/api/show", {"model": args.model}).json()
    if args.modelfile:
        print(info.get("modelfile", ""), end="")
    else:
        print(json.dumps({k: info[k] for k in ("details", "capabilities") if k in info}, indent=2))
    return 0


def copy(args: argparse.Namespace) -> int:
    _request("POST", "/api/copy", {"source": args.source, "destination": args.destination})
    print(f"copied '{args.source}' to '{args.destination}'")
    return 0


def remove(args: argparse.Namespace) -> int:
    for model in args.models:
        _request("DELETE", "/api/delete", {"model": model})
        print(f"deleted '{model}'")
    return 0


def create(args: argparse.Namespace) -> int:
    from modelrunner.store.modelfile import parse_modelfile

    modelfile_path = Path(args.file)
    parsed = parse_modelfile(modelfile_path.read_text())
    body: dict[str, Any] = {"model": args.name}
    source = parsed.from_ or ""
    local = (modelfile_path.parent / source).expanduser()
    if local.is_file():
        body["files"] = {local.name: _upload(local)}
    else:
        body["from"] = source
    for key in ("template", "system", "requires"):
        value = getattr(parsed, key)
        if value is not None:
            body[key] = value
    if parsed.parameters:
        body["parameters"] = parsed.parameters
    if parsed.messages:
        body["messages"] = parsed.messages
    if parsed.license:
        body["license"] = parsed.license
    for line in _request("POST", "/api/create", body | {"stream": True}).text.splitlines():
        print(json.loads(line).get("status", ""))
    return 0


def _upload(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    ref = "sha256:" + digest.hexdigest()
    with httpx.Client(base_url=_server_url(), timeout=None, headers=_auth_headers()) as client:
        if client.head(f"/api/blobs/{ref}").status_code != 200:
            with path.open("rb") as handle:
                response = client.post(f"/api/blobs/{ref}", content=handle)
            if response.status_code >= 400:
                raise SystemExit(f"Error: {response.text}")
    return ref


def pull(args: argparse.Namespace) -> int:
    return _transfer("/api/pull", args.model, args.insecure)


def push(args: argparse.Namespace) -> int:
    return _transfer("/api/push", args.model, args.insecure)


def _transfer(path: str, model: str, insecure: bool) -> int:
    """Stream a pull or push from the server, printing Ollama's progress statuses."""
    body = {"model": model, "insecure": insecure, "stream": True}
    tty = sys.stdout.isatty()
    shown: dict[str, int] = {}
    with (
        httpx.Client(base_url=_server_url(), timeout=None, headers=_auth_headers()) as client,
        client.stream("POST", path, json=body) as response,
    ):
        if response.status_code >= 400:
            response.read()
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            raise SystemExit(f"Error: {message}")
        for line in response.iter_lines():
            if not line.strip():
                continue
            item = json.loads(line)
            if "error" in item:
                if tty:
                    print()
                raise SystemExit(f"Error: {item['error']}")
            status, total = item.get("status", ""), item.get("total") or 0
            if not total:
                if tty and shown:
                    print()
                    shown.clear()
                print(status, flush=True)
                continue
            percent = int(100 * (item.get("completed") or 0) / total)
            if tty:
                print(f"\r{status} {percent:3d}% of {total / 1e6:.1f} MB", end="", flush=True)
                shown[status] = percent
            elif status not in shown or (percent == 100 and shown[status] != 100):
                print(f"{status} {percent}% of {total / 1e6:.1f} MB", flush=True)
                shown[status] = percent
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelrunner", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the server (Ollama, DMR and OpenAI APIs)")
    p.add_argument(
        "--listen",
        action="append",
        metavar="HOST:PORT",
        help="address to listen on; repeatable (env MODEL_RUNNER_LISTEN)",
    )
    p.add_argument("--models", metavar="DIR", help="model store root (env MODEL_RUNNER_MODELS)")
    p.add_argument(
        "--default-model",
        action="store_true",
        help="import Gemma 3 270M as gemma3:270m first if it is missing",
    )
    p.add_argument(
        "--api-keys-file",
        metavar="FILE",
        help="inference API keys, KEY or ID:KEY a line; re-read on change or SIGHUP "
        "(env MODEL_RUNNER_API_KEYS_FILE; MODEL_RUNNER_API_KEYS lists keys inline)",
    )
    p.add_argument(
        "--management-token-file",
        metavar="FILE",
        help="file with the token pull/push/create/copy/delete need "
        "(env MODEL_RUNNER_MANAGEMENT_TOKEN_FILE, or MODEL_RUNNER_MANAGEMENT_TOKEN)",
    )
    p.add_argument(
        "--allowed-host",
        action="append",
        metavar="NAME",
        help="Host header a loopback-bound server accepts besides local names; repeatable "
        "(env MODEL_RUNNER_ALLOWED_HOSTS)",
    )
    p.add_argument(
        "--max-loaded-models",
        type=int,
        metavar="N",
        help="models kept loaded at once (env MODEL_RUNNER_MAX_LOADED_MODELS; default 3)",
    )
    p.add_argument(
        "--memory-budget",
        metavar="SIZE",
        help="bytes the loaded models (weights and KV cache) may take, e.g. 8GiB; 0: none "
        "(env MODEL_RUNNER_MEMORY_BUDGET)",
    )
    p.set_defaults(func=serve)

    p = sub.add_parser("list", aliases=["ls"], help="list models")
    p.set_defaults(func=list_models)
    p = sub.add_parser("show", help="show a model")
    p.add_argument("model")
    p.add_argument("--modelfile", action="store_true", help="print the Modelfile")
    p.set_defaults(func=show)
    p = sub.add_parser("create", help="create a model from a Modelfile")
    p.add_argument("name")
    p.add_argument("-f", "--file", default="Modelfile")
    p.set_defaults(func=create)
    p = sub.add_parser("cp", help="copy a model")
    p.add_argument("source")
    p.add_argument("destination")
    p.set_defaults(func=copy)
    p = sub.add_parser("pull", help="pull a model from a registry")
    p.add_argument("model")
    p.add_argument("--insecure", action="store_true", help="allow plain http and unverified TLS")
    p.set_defaults(func=pull)
    p = sub.add_parser("push", help="push a model to a registry")
    p.add_argument("model")
    p.add_argument("--insecure", action="store_true", help="allow plain http and unverified TLS")
    p.set_defaults(func=push)
    p = sub.add_parser("rm", help="remove models")
    p.add_argument("models", nargs="+")
    p.set_defaults(func=remove)
    gateway_command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except httpx.ConnectError:
        print(
            f"Error: could not connect to a running modelrunner at {_server_url()}", file=sys.stderr
        )
        return 1
    return result


if __name__ == "__main__":
    sys.exit(main())
