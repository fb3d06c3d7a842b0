"""Pure parts of the registry client: name to URL, auth parsing, credentials, part plans, index
selection, progress rendering. No network here; the HTTP behaviour is in test_registry.py."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from modelrunner.api.dmr.registry import render as render_dmr
from modelrunner.api.ollama.registry import render as render_ollama
from modelrunner.core.transfer import check_model_artifact
from modelrunner.errors import InvalidName, UpstreamError
from modelrunner.names import Dialect
from modelrunner.registry.auth import Challenge, Credentials, CredentialStore
from modelrunner.registry.client import pick_from_index
from modelrunner.registry.config import MB, TransferConfig
from modelrunner.registry.errors import InsecureProtocol, UnsupportedArtifact
from modelrunner.registry.partial import plan_parts
from modelrunner.registry.progress import LayerProgress, TransferEvent
from modelrunner.registry.references import is_local_host, resolve
from modelrunner.store import media
from modelrunner.store.manifests import Descriptor, Manifest

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


@pytest.mark.parametrize(
    ("ref", "dialect", "netloc", "repository", "tag"),
    [
        ("llama3.2", Dialect.OLLAMA, "registry.ollama.ai", "library/llama3.2", "latest"),
        ("user/m:1b", Dialect.OLLAMA, "registry.ollama.ai", "user/m", "1b"),
        ("ai/smollm2:360M", Dialect.DMR, "registry-1.docker.io", "ai/smollm2", "360M"),
        ("smollm2", Dialect.DMR, "registry-1.docker.io", "ai/smollm2", "latest"),
        ("hf.co/Org/Repo-GGUF:Q4_K_M", Dialect.OLLAMA, "hf.co", "org/repo-gguf", "Q4_K_M"),
        ("huggingface.co/org/repo", Dialect.DMR, "hf.co", "org/repo", "latest"),
        ("ghcr.io/acme/m:1", Dialect.DMR, "ghcr.io", "acme/m", "1"),
    ],
)
def test_name_to_registry(
    ref: str, dialect: Dialect, netloc: str, repository: str, tag: str
) -> None:
    target = resolve(ref, dialect)
    assert (target.netloc, target.repository, target.tag) == (netloc, repository, tag)
    assert target.scheme == "https" and target.verify_tls and not target.http_fallback
    assert target.base() == f"https://{netloc}/v2/"


def test_plain_http_needs_consent() -> None:
    with pytest.raises(InsecureProtocol, match=r"^insecure protocol http$"):
        resolve("http://127.0.0.1:5000/a/b:1", Dialect.OLLAMA)
    explicit = resolve("http://127.0.0.1:5000/a/b:1", Dialect.OLLAMA, insecure=True)
    assert (explicit.scheme, explicit.netloc) == ("http", "127.0.0.1:5000")
    flagged = resolve("127.0.0.1:5000/a/b:1", Dialect.OLLAMA, insecure=True)
    assert (flagged.scheme, flagged.http_fallback, flagged.verify_tls) == ("https", True, False)
    listed = resolve("reg.example:5000/a/b", Dialect.OLLAMA, insecure_registries=["reg.example"])
    assert listed.http_fallback
    listed = resolve(
        "reg.example:5000/a/b", Dialect.OLLAMA, insecure_registries=["http://reg.example:5000"]
    )
    assert listed.http_fallback
    assert not resolve(
        "other.example/a/b", Dialect.OLLAMA, insecure_registries=["reg.example"]
    ).http_fallback
    # DMR (go-containerregistry) talks plain http to local and private hosts on its own.
    assert resolve("127.0.0.1:5000/ai/m", Dialect.DMR).scheme == "http"
    assert resolve("localhost:5000/ai/m", Dialect.DMR).scheme == "http"
    assert resolve("127.0.0.1:5000/ai/m", Dialect.OLLAMA).scheme == "https"
    with pytest.raises(InvalidName):
        resolve("a/b/c/d", Dialect.OLLAMA)


def test_local_hosts() -> None:
    assert is_local_host("localhost") and is_local_host("box.local:80")
    assert is_local_host("10.1.2.3:5000") and is_local_host("[::1]:5000")
    assert not is_local_host("ghcr.io") and not is_local_host("8.8.8.8")


def test_challenge_parsing() -> None:
    header = (
        'Bearer realm="https://auth.example/token",service="registry.example",'
        'scope="repository:a/b:pull,push repository:c/d:pull"'
    )
    challenge = Challenge.parse(header)
    assert challenge is not None and challenge.scheme == "bearer"
    assert challenge.params == {
        "realm": "https://auth.example/token",
        "service": "registry.example",
        "scope": "repository:a/b:pull,push repository:c/d:pull",
    }
    basic = Challenge.parse('Basic realm="x"')
    assert basic is not None and basic.scheme == "basic"
    assert Challenge.parse("") is None


def test_credentials_from_env_and_docker_config(tmp_path: Path) -> None:
    auth = base64.b64encode(b"bob:pw").decode()
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "auths": {
                    "https://index.docker.io/v1/": {"auth": auth},
                    "ghcr.io": {"username": "u", "password": "p"},
                    "tok.example": {"registrytoken": "abc"},
                }
            }
        )
    )
    store = CredentialStore(json.dumps({"reg.example:5000": "alice:secret"}), config)
    assert store.lookup("reg.example:5000") == Credentials("alice", "secret")
    assert store.lookup("registry-1.docker.io", "docker.io") == Credentials("bob", "pw")
    assert store.lookup("ghcr.io") == Credentials("u", "p")
    assert store.lookup("tok.example") == Credentials(token="abc")
    assert store.lookup("nowhere.example") is None
    docker_shaped = CredentialStore(
        json.dumps({"auths": {"https://q.example/v2/": {"auth": auth}}})
    )
    assert docker_shaped.lookup("q.example") == Credentials("bob", "pw")
    assert Credentials("a", "b").basic == "Basic " + base64.b64encode(b"a:b").decode()
    assert CredentialStore("not json", tmp_path / "missing.json").lookup("x") is None


def test_part_plans() -> None:
    config = TransferConfig()
    assert plan_parts(0, config) == []
    small = plan_parts(10 * MB, config)
    assert [(p.offset, p.size) for p in small] == [(0, 10 * MB)]
    big = plan_parts(3200 * MB, config)  # total / 16 = 200 MB
    assert len(big) == 16 and {p.size for p in big} == {200 * MB}
    huge = plan_parts(40_000 * MB, config)  # clamped to 1 GB parts
    assert max(p.size for p in huge) == 1024 * MB and sum(p.size for p in huge) == 40_000 * MB
    tiny = plan_parts(1000, TransferConfig(min_part_size=300))
    assert [p.size for p in tiny] == [300, 300, 300, 100]
    assert tiny[-1].last == 999 and tiny[1].first == 300


def test_pick_from_index() -> None:
    def entry(digest: str, **extra: object) -> dict[str, object]:
        return {"mediaType": media.OCI_MANIFEST, "digest": digest, "size": 1, **extra}

    attestation = {"annotations": {"vnd.docker.reference.type": "attestation-manifest"}}
    arm = {"platform": {"os": "linux", "architecture": "arm64"}}
    amd = {"platform": {"os": "linux", "architecture": "amd64"}}
    assert pick_from_index({"manifests": [entry(D1, **attestation), entry(D2)]}) == D2
    assert pick_from_index({"manifests": [entry(D1, **arm), entry(D2, **amd)]}) == D2
    model = {"artifactType": media.DOCKER_CONFIG_V01}
    assert pick_from_index({"manifests": [entry(D1, **amd), entry(D2, **model)]}) == D2
    with pytest.raises(UpstreamError):
        pick_from_index({"manifests": [entry(D1, **attestation)]})


def test_only_model_artifacts_are_pulled() -> None:
    image = Manifest.build(
        Descriptor(media.OLLAMA_CONFIG, D1, 10),
        [Descriptor("application/vnd.docker.image.rootfs.diff.tar.gzip", D2, 10)],
    )
    with pytest.raises(UnsupportedArtifact) as error:
        check_model_artifact(image)
    assert error.value.status == 422
    check_model_artifact(
        Manifest.build(
            Descriptor(media.OLLAMA_CONFIG, D1, 1), [Descriptor(media.OLLAMA_MODEL, D2, 1)]
        )
    )
    check_model_artifact(
        Manifest.build(
            Descriptor(media.DOCKER_CONFIG_V02, D1, 1),
            [Descriptor(media.DOCKER_GGUF, D2, 1)],
            media.OCI_MANIFEST,
        )
    )


def test_layer_progress_reports_changes_only() -> None:
    progress = LayerProgress("pulling", [Descriptor("x", D1, 100), Descriptor("y", D2, 50)])
    counter = [0]
    progress.track(D1, lambda: counter[0])
    progress.complete(D2)
    first = progress.changed()
    assert [(e.status, e.completed, e.total, e.image_total) for e in first] == [
        ("pulling 111111111111", 0, 100, 150),
        ("pulling 222222222222", 50, 50, 150),
    ]
    assert progress.changed() == []
    counter[0] = 40
    (event,) = progress.changed()
    assert (event.digest, event.completed, event.kind) == (D1, 40, "layer")


def test_dialect_rendering() -> None:
    layer = TransferEvent("pulling 111111111111", "layer", D1, 100, 0, 150)
    assert render_ollama(layer) == {"status": "pulling 111111111111", "digest": D1, "total": 100}
    assert render_ollama(TransferEvent("success", "success")) == {"status": "success"}
    assert render_dmr(TransferEvent("pulling manifest"), "pull") is None
    moving = TransferEvent("pulling 111111111111", "layer", D1, 100, 3 * MB, 150)
    assert render_dmr(moving, "pull") == {
        "type": "progress",
        "message": "Downloaded: 3.00 MB",
        "total": 150,
        "layer": {"id": D1, "size": 100, "current": 3 * MB},
        "mode": "pull",
    }
    done = render_dmr(TransferEvent("success", "success"), "push")
    assert done is not None
    assert (done["type"], done["message"], done["mode"]) == (
        "success",
        "Model pushed successfully",
        "push",
    )


def test_docker_config_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "dockercfg"
    folder.mkdir()
    auth = base64.b64encode(b"carol:pw").decode()
    (folder / "config.json").write_text(json.dumps({"auths": {"r.example": {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    monkeypatch.delenv("MODEL_RUNNER_REGISTRY_AUTH", raising=False)
    found = CredentialStore.from_environment()
    assert found.config_path() == folder / "config.json"
    assert found.lookup("r.example") == Credentials("carol", "pw")
    explicit = CredentialStore.from_environment(tmp_path / "other.json")
    assert explicit.lookup("r.example") is None  # the setting wins over $DOCKER_CONFIG
    monkeypatch.delenv("DOCKER_CONFIG")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert CredentialStore().config_path() == tmp_path / ".docker" / "config.json"
