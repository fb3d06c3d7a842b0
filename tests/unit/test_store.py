from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from modelrunner.errors import BlobNotFound, DigestMismatch, InvalidDigest, InvalidRequest
from modelrunner.names import Dialect, parse
from modelrunner.store import media
from modelrunner.store.create import CreateSpec, check_relative_path, create_model
from modelrunner.store.manifests import untagged_name
from modelrunner.store.models import ModelStore


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "models")


@pytest.fixture
def base(store: ModelStore, tiny_gguf: Path) -> str:
    digest = store.blobs.import_file(tiny_gguf)
    create_model(store, parse("tiny"), CreateSpec(files={"tiny.gguf": digest}))
    return digest


def store_files(store: ModelStore) -> set[str]:
    return {str(p.relative_to(store.root)) for p in store.root.rglob("*") if p.is_file()}


def test_layout_is_ollamas(store: ModelStore, base: str) -> None:
    assert (store.root / "manifests/registry.ollama.ai/library/tiny/latest").is_file()
    assert (store.root / f"blobs/sha256-{base.split(':')[1]}").is_file()


def test_blob_writer_verifies_and_leaves_nothing_on_mismatch(store: ModelStore) -> None:
    before = store_files(store)
    with pytest.raises(DigestMismatch), store.blobs.writer("sha256:" + "0" * 64) as writer:
        writer.write(b"hello")
        writer.commit()
    assert store_files(store) == before


@pytest.mark.parametrize(
    "digest", ["sha256:xyz", "md5:" + "0" * 32, "../../etc", "sha256:" + "0" * 63]
)
def test_malformed_digests_are_rejected(store: ModelStore, digest: str) -> None:
    with pytest.raises(InvalidDigest):
        store.blobs.path(digest)


def test_both_digest_spellings_name_one_file(store: ModelStore) -> None:
    digest = store.blobs.put(b"abc")
    assert store.blobs.exists(digest.replace(":", "-"))


def test_record_reads_gguf_details(store: ModelStore, base: str) -> None:
    record = store.get("tiny")
    assert record.family == "llama"
    assert record.quantization_level == "F32"
    assert record.parameter_size.endswith("K")
    assert record.capabilities() == ["completion"]
    config = json.loads(store.blobs.read(record.manifest.config.digest))
    assert config["model_format"] == "gguf"


def test_delete_keeps_blobs_other_models_use(store: ModelStore, base: str) -> None:
    create_model(store, parse("tiny-sys"), CreateSpec(from_="tiny", system="Be brief."))
    system_layer = store.get("tiny-sys").manifest.layers_of(media.OLLAMA_SYSTEM)[0].digest
    store.delete(store.resolve("tiny"))
    assert store.blobs.exists(base)  # still used by tiny-sys
    store.delete(store.resolve("tiny-sys"))
    assert not store.blobs.exists(base)
    assert not store.blobs.exists(system_layer)
    assert not any((store.root / "manifests").iterdir())  # empty folders pruned


def test_delete_keeps_blobs_hidden_or_oddly_named_manifests_use(
    store: ModelStore, base: str
) -> None:
    """Blob collection reads manifest files, not names: a blob that an untagged model or a
    manifest under a name that no longer parses uses is kept; temporary files are not
    manifests."""
    create_model(store, parse("tiny-sys"), CreateSpec(from_="tiny", system="Be brief."))
    record = store.get("tiny-sys")
    system_layer = record.manifest.layers_of(media.OLLAMA_SYSTEM)[0].digest
    hidden = untagged_name(record.manifest.digest)
    store.write_manifest(hidden, record.manifest)
    store.delete(store.resolve("tiny-sys"))
    assert store.blobs.exists(system_layer)  # the untagged copy still uses it
    odd = store.root / "manifests/registry.ollama.ai/library/Not A Name!/latest"
    odd.parent.mkdir(parents=True)
    odd.write_bytes(record.manifest.raw)
    store.delete(hidden)
    assert store.blobs.exists(system_layer)  # the odd file still names it
    assert parse("tiny") in store.manifests.names()
    odd.unlink()
    (odd.parent / ".tmp-latest").write_bytes(record.manifest.raw)  # a write in progress
    store.delete(store.resolve("tiny"))
    assert not store.blobs.exists(base)  # the temporary file names it too, but does not count


def test_create_inherits_and_overrides(store: ModelStore, base: str) -> None:
    create_model(
        store, parse("a"), CreateSpec(from_="tiny", system="one", parameters={"temperature": 0.5})
    )
    create_model(store, parse("b"), CreateSpec(from_="a", parameters={"top_k": 3}))
    b = store.get("b")
    assert b.system == "one"
    assert b.parameters == {"temperature": 0.5, "top_k": 3}
    assert b.config["parent_model"] == "a:latest"


def test_create_from_missing_blob_changes_nothing(store: ModelStore, base: str) -> None:
    before = store_files(store)
    with pytest.raises(BlobNotFound):
        create_model(store, parse("x"), CreateSpec(files={"m.gguf": "sha256:" + "1" * 64}))
    assert store_files(store) == before


def test_create_rejects_a_non_gguf_blob(store: ModelStore) -> None:
    digest = store.blobs.put(b"not a model")
    with pytest.raises(InvalidRequest, match="not a GGUF"):
        create_model(store, parse("x"), CreateSpec(files={"m.gguf": digest}))
    assert store.manifests.names() == []


@pytest.mark.parametrize("path", ["/abs/m.gguf", "../m.gguf", "a/../../m.gguf", "C:\\m.gguf"])
def test_file_paths_must_stay_relative(path: str) -> None:
    with pytest.raises(InvalidRequest, match="file path must be relative"):
        check_relative_path(path)


def test_lookup_is_case_insensitive_and_cross_dialect(store: ModelStore, base: str) -> None:
    assert store.resolve("TINY:Latest") == parse("tiny")
    # A DMR caller asking for a bare name finds the Ollama-named model.
    assert store.resolve("tiny", Dialect.DMR) == parse("tiny")
    record = store.get("tiny")
    assert store.resolve(record.digest, Dialect.DMR) == parse("tiny")


def test_concurrent_creates_and_deletes_keep_the_store_consistent(
    store: ModelStore, base: str
) -> None:
    errors: list[BaseException] = []

    def churn(i: int) -> None:
        try:
            for j in range(5):
                name = parse(f"m{i}-{j}")
                create_model(store, name, CreateSpec(from_="tiny", system=f"s{i}{j}"))
                if j % 2:
                    store.delete(name)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for name in store.manifests.names():
        manifest, _ = store.manifests.read(name)
        assert all(store.blobs.exists(d) for d in manifest.blobs()), name


def test_prune_removes_only_old_unreferenced_blobs(store: ModelStore, base: str) -> None:
    orphan = store.blobs.put(b"orphan")
    assert store.prune(min_age=3600) == []  # too young: may belong to a create in progress
    assert store.prune(min_age=0) == [orphan]
    assert store.blobs.exists(base)
