"""A real OCI registry for tests: Debian's ``docker-registry`` (CNCF distribution 2.8).

Register as a plugin (``pytest_plugins = ["tests.support.registry"]``). It provides:

- ``registry`` (session): a plain-http registry on 127.0.0.1 with a temporary storage folder;
- ``token_registry`` (session): the same behind distribution's token auth, with a small token server
  (:class:`TokenServer`) that signs JWTs with a throw-away key made by ``openssl``. Anonymous callers
  may pull ``public/*``; the user ``tester``/``secret`` may pull and push everything;
- :func:`redirecting_front`: a Basic-auth front of ``registry`` that redirects blob downloads to
  another host (:class:`BlobStorage`), as registries do with their CDN;
- ``fault_proxy``: a TCP proxy in front of ``registry`` that counts bytes and can cut, refuse, slow
  down or answer 500 (:class:`FaultProxy`).

Helpers push artifacts with plain HTTP calls (:meth:`Registry.push_artifact`), so a test can build a
Docker Model Runner artifact without going through the code under test.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import http.server
import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.processes import stop_process

REGISTRY_BINARY = "/usr/bin/docker-registry"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
TOKEN_SERVICE = "modelrunner-test-registry"
TOKEN_ISSUER = "modelrunner-test-issuer"
TEST_USER, TEST_PASSWORD = "tester", "secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- registry


@dataclass
class Registry:
    """A running docker-registry; ``host`` is ``127.0.0.1:<port>`` as model names spell it."""

    host: str
    root: Path
    process: subprocess.Popen[bytes]
    token_server: TokenServer | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def blob_data_path(self, digest: str) -> Path:
        """Where the filesystem driver keeps a blob's bytes (to corrupt them on purpose)."""
        hex_ = digest.removeprefix("sha256:")
        return self.root / "docker/registry/v2/blobs/sha256" / hex_[:2] / hex_ / "data"

    def client(self) -> httpx.Client:
        """A plain HTTP client; with token auth, requests add :meth:`_auth_headers`."""
        return httpx.Client(base_url=self.url, timeout=30)

    def _auth_headers(self, repository: str, actions: str) -> dict[str, str]:
        if self.token_server is None:
            return {}
        token = self.token_server.issue(
            TEST_USER, [f"repository:{repository}:{actions}"], granted_only=False
        )
        return {"Authorization": f"Bearer {token}"}

    def push_blob(self, repository: str, data: bytes) -> str:
        digest = sha256(data)
        headers = self._auth_headers(repository, "pull,push")
        with self.client() as http:
            if http.head(f"/v2/{repository}/blobs/{digest}", headers=headers).status_code == 200:
                return digest
            started = http.post(f"/v2/{repository}/blobs/uploads/", headers=headers)
            assert started.status_code == 202, started.text
            location = httpx.URL(self.url).join(started.headers["Location"])
            done = http.put(
                location.copy_merge_params({"digest": digest}),
                content=data,
                headers=headers | {"Content-Type": "application/octet-stream"},
            )
            assert done.status_code == 201, done.text
        return digest

    def push_manifest(self, repository: str, tag: str, body: bytes, media_type: str) -> str:
        headers = self._auth_headers(repository, "pull,push") | {"Content-Type": media_type}
        with self.client() as http:
            response = http.put(f"/v2/{repository}/manifests/{tag}", content=body, headers=headers)
            assert response.status_code == 201, response.text
        return sha256(body)

    def push_artifact(
        self,
        repository: str,
        tag: str,
        config: bytes,
        config_media_type: str,
        layers: list[tuple[str, bytes]],
        manifest_media_type: str = OCI_MANIFEST,
        layer_annotations: list[dict[str, str]] | None = None,
    ) -> tuple[str, bytes]:
        """Upload the blobs and the manifest; returns the manifest digest and bytes."""
        descriptors = []
        for index, (media_type, data) in enumerate(layers):
            entry: dict[str, Any] = {
                "mediaType": media_type,
                "digest": self.push_blob(repository, data),
                "size": len(data),
            }
            if layer_annotations and layer_annotations[index]:
                entry["annotations"] = layer_annotations[index]
            descriptors.append(entry)
        manifest = {
            "schemaVersion": 2,
            "mediaType": manifest_media_type,
            "config": {
                "mediaType": config_media_type,
                "digest": self.push_blob(repository, config),
                "size": len(config),
            },
            "layers": descriptors,
        }
        body = json.dumps(manifest, indent=2).encode()
        return self.push_manifest(repository, tag, body, manifest_media_type), body

    def manifest(self, repository: str, tag: str) -> httpx.Response:
        headers = self._auth_headers(repository, "pull") | {
            "Accept": f"{OCI_MANIFEST}, application/vnd.docker.distribution.manifest.v2+json"
        }
        with self.client() as http:
            return http.get(f"/v2/{repository}/manifests/{tag}", headers=headers)

    def has_blob(self, repository: str, digest: str) -> bool:
        headers = self._auth_headers(repository, "pull")
        with self.client() as http:
            return http.head(f"/v2/{repository}/blobs/{digest}", headers=headers).status_code == 200


def _config_yaml(root: Path, port: int, auth: str) -> str:
    return f"""version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: modelrunner-test-secret
{auth}"""


@contextlib.contextmanager
def run_registry(workdir: Path, token_server: TokenServer | None = None) -> Iterator[Registry]:
    """Start docker-registry with a temporary config; stop it (and remove nothing) afterwards."""
    if not Path(REGISTRY_BINARY).exists():
        pytest.skip(f"{REGISTRY_BINARY} is missing: apt-get install docker-registry")
    root = workdir / "storage"
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    auth = ""
    if token_server is not None:
        auth = (
            "auth:\n  token:\n"
            f"    realm: {token_server.url}/token\n"
            f"    service: {TOKEN_SERVICE}\n"
            f"    issuer: {TOKEN_ISSUER}\n"
            f"    rootcertbundle: {token_server.cert_path}\n"
        )
    config = workdir / "config.yml"
    config.write_text(_config_yaml(root, port, auth))
    log = (workdir / "registry.log").open("wb")
    process = subprocess.Popen(
        [REGISTRY_BINARY, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
    )
    registry = Registry(f"127.0.0.1:{port}", root, process, token_server)
    try:
        _wait_ready(registry, workdir / "registry.log")
        yield registry
    finally:
        stop_process(process, timeout=10)
        log.close()


def _wait_ready(registry: Registry, log: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if registry.process.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {log.read_text()[-2000:]}")
        try:
            status = httpx.get(f"{registry.url}/v2/", timeout=1).status_code
        except httpx.HTTPError:
            status = 0
        if status in (200, 401):
            return
        time.sleep(0.05)
    raise RuntimeError(f"docker-registry did not start: {log.read_text()[-2000:]}")


# --------------------------------------------------------------------------- token server


class TokenServer:
    """Distribution's token endpoint (``GET /token?service=&scope=``), RS256 JWTs with ``x5c``.

    Anonymous requests get ``pull`` on ``public/*`` repositories only; :data:`TEST_USER` gets every
    action asked for; wrong credentials get 401. ``requests`` records each call (for assertions).
    """

    def __init__(self, workdir: Path) -> None:
        if shutil.which("openssl") is None:
            pytest.skip("openssl is needed to sign test registry tokens")
        workdir.mkdir(parents=True, exist_ok=True)
        self.key_path = workdir / "token.key"
        self.cert_path = workdir / "token.pem"
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-subj", "/CN=modelrunner-test-token", "-keyout", str(self.key_path),
                "-out", str(self.cert_path),
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        pem = self.cert_path.read_text()
        self.cert_der_b64 = "".join(line for line in pem.splitlines() if "-----" not in line)
        self.requests: list[dict[str, Any]] = []
        self.user, self.password = TEST_USER, TEST_PASSWORD
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> TokenServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _sign(self, data: bytes) -> bytes:
        done = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key_path)],
            input=data,
            capture_output=True,
            check=True,
        )
        return done.stdout

    def issue(self, user: str | None, scopes: list[str], granted_only: bool = True) -> str:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            wanted = [a for a in actions.split(",") if a]
            if user is None and granted_only:
                wanted = [a for a in wanted if a == "pull" and name.startswith("public/")]
            access.append({"type": kind, "name": name, "actions": wanted})
        now = int(time.time())
        claims = {
            "iss": TOKEN_ISSUER,
            "sub": user or "",
            "aud": TOKEN_SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.cert_der_b64]}
        signing_input = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
        return signing_input + "." + _b64(self._sign(signing_input.encode()))

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(url.query)
                user = _basic_user(self.headers.get("Authorization"))
                server.requests.append({"path": url.path, "query": query, "user": user})
                if url.path != "/token" or user is False:
                    self.send_response(401 if user is False else 404)
                    self.end_headers()
                    return
                token = server.issue(user or None, query.get("scope", []))
                body = json.dumps({"token": token, "access_token": token, "expires_in": 300})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

        return Handler


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _basic_user(header: str | None) -> str | bool | None:
    """The user of valid Basic credentials, None when there are none, False when wrong."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _, password = base64.b64decode(value).decode().partition(":")
    except ValueError:
        return False
    return user if (user, password) == (TEST_USER, TEST_PASSWORD) else False


# --------------------------------------------------------------------------- redirects


class _QuietHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def reply(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class _ThreadServer:
    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class BlobStorage:
    """Stands for a CDN: serves a registry's blob files at ``http://localhost:<port>/blobs/<d>``
    (another host name than the registry's 127.0.0.1), with ranges; records request headers."""

    def __init__(self, registry: Registry) -> None:
        self.requests: list[dict[str, str]] = []
        storage = self

        class Handler(_QuietHandler):
            def do_GET(self) -> None:
                storage.requests.append({k.lower(): v for k, v in self.headers.items()})
                digest = self.path.rsplit("/", 1)[-1]
                data = registry.blob_data_path(digest).read_bytes()
                wanted = self.headers.get("Range", "")
                if wanted.startswith("bytes="):
                    first, _, last = wanted[6:].partition("-")
                    end = min(int(last) if last else len(data) - 1, len(data) - 1)
                    part = data[int(first) : end + 1]
                    span = f"bytes {first}-{end}/{len(data)}"
                    self.reply(206, {"Content-Range": span}, part)
                else:
                    self.reply(200, {}, data)

        self._server = _ThreadServer(Handler)
        self.url = f"http://localhost:{self._server.port}"

    def stop(self) -> None:
        self._server.stop()


class RedirectingFront:
    """A registry front that wants Basic auth (:data:`TEST_USER`), forwards manifest and blob
    ``HEAD`` requests to ``registry`` and answers blob ``GET`` with a 307 to :class:`BlobStorage`.
    ``requests`` records (method, path, Authorization) of what it saw."""

    def __init__(self, registry: Registry, storage: BlobStorage) -> None:
        self.requests: list[tuple[str, str, str | None]] = []
        expected = "Basic " + base64.b64encode(f"{TEST_USER}:{TEST_PASSWORD}".encode()).decode()
        front = self

        class Handler(_QuietHandler):
            def handle_any(self) -> None:
                auth = self.headers.get("Authorization")
                front.requests.append((self.command, self.path, auth))
                if auth != expected:
                    challenge = {"WWW-Authenticate": 'Basic realm="front"'}
                    self.reply(401, challenge | {"Content-Type": "application/json"}, b"{}")
                    return
                if self.command == "GET" and "/blobs/sha256:" in self.path:
                    digest = self.path.rsplit("/", 1)[-1]
                    self.reply(307, {"Location": f"{storage.url}/blobs/{digest}"})
                    return
                accept = self.headers.get("Accept", "*/*")
                answer = httpx.request(
                    self.command, registry.url + self.path, headers={"Accept": accept}
                )
                keep = ("Content-Type", "Docker-Content-Digest", "Content-Length")
                headers = {k: answer.headers[k] for k in keep if k in answer.headers}
                self.reply(answer.status_code, headers, answer.content)

            do_GET = handle_any
            do_HEAD = handle_any

        self._server = _ThreadServer(Handler)
        self.host = f"127.0.0.1:{self._server.port}"

    def stop(self) -> None:
        self._server.stop()


@contextlib.contextmanager
def redirecting_front(registry: Registry) -> Iterator[tuple[RedirectingFront, BlobStorage]]:
    storage = BlobStorage(registry)
    front = RedirectingFront(registry, storage)
    try:
        yield front, storage
    finally:
        front.stop()
        storage.stop()


# --------------------------------------------------------------------------- fault proxy


@dataclass
class FaultProxy:
    """A TCP proxy on its own event loop thread, in front of ``target`` (``host:port``).

    Modes: ``pass``; ``cut`` (after ``cut_after`` bytes sent to clients in total, close the
    connection and switch to ``refuse``); ``refuse`` (close every new connection at once);
    ``error500`` (answer every request with HTTP 500); ``stall`` (once ``cut_after`` bytes went
    to clients, the connection carrying the next bytes hangs without closing, later ones pass). ``rate`` limits bytes per second sent to
    clients (0 = unlimited). ``down``/``up`` count bytes sent to / received from clients.
    """

    target: str
    mode: str = "pass"
    cut_after: int = 0
    rate: float = 0.0
    down: int = 0
    up: int = 0
    port: int = field(default_factory=free_port)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _server: asyncio.Server | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def reset(self, mode: str = "pass", cut_after: int = 0, rate: float = 0.0) -> None:
        self.mode, self.cut_after, self.rate = mode, cut_after, rate
        self.down = self.up = 0

    def start(self) -> FaultProxy:
        ready = threading.Event()
        loop = asyncio.new_event_loop()
        self._loop = loop

        async def open_server() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(open_server())
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fault proxy did not start")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            while tasks := [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), loop)
        self._thread.join(timeout=10)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self.mode == "refuse":
                return
            if self.mode == "error500":
                await self._answer_500(reader, writer)
                return
            host, port = self.target.rsplit(":", 1)
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            try:
                await asyncio.gather(
                    self._pump(reader, up_writer, downstream=False),
                    self._pump(up_reader, writer, downstream=True),
                )
            finally:
                up_writer.close()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _answer_500(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)  # whatever the client says first (a request, or a TLS hello)
        body = b'{"errors":[{"code":"UNKNOWN","message":"injected failure"}]}'
        writer.write(
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        writer.write(body)
        await writer.drain()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, downstream: bool
    ) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if not downstream:
                    self.up += len(data)
                    writer.write(data)
                    await writer.drain()
                    continue
                if self.mode == "stall" and self.down + len(data) > self.cut_after:
                    self.mode = "pass"  # this connection hangs; the next ones work
                    await asyncio.sleep(3600)
                if self.mode == "cut":
                    room = self.cut_after - self.down
                    if room <= len(data):
                        writer.write(data[: max(room, 0)])
                        self.down += max(room, 0)
                        await writer.drain()
                        self.mode = "refuse"
                        writer.transport.abort()
                        return
                if self.mode == "refuse":
                    writer.transport.abort()
                    return
                self.down += len(data)
                writer.write(data)
                await writer.drain()
                if self.rate:
                    await asyncio.sleep(len(data) / self.rate)
        finally:
            with contextlib.suppress(Exception):
                if writer.can_write_eof():
                    writer.write_eof()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def registry() -> Iterator[Registry]:
    with (
        tempfile.TemporaryDirectory(prefix="registry-") as folder,
        run_registry(Path(folder)) as reg,
    ):
        yield reg


@pytest.fixture(scope="session")
def token_registry() -> Iterator[Registry]:
    with tempfile.TemporaryDirectory(prefix="token-registry-") as folder:
        tokens = TokenServer(Path(folder) / "tokens").start()
        try:
            with run_registry(Path(folder), tokens) as reg:
                yield reg
        finally:
            tokens.stop()


@pytest.fixture
def fault_proxy(registry: Registry) -> Iterator[FaultProxy]:
    proxy = FaultProxy(registry.host).start()
    try:
        yield proxy
    finally:
        proxy.stop()
