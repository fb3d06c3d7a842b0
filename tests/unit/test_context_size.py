"""Which context size a model loads with: request > runtime setting > Modelfile > default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelrunner.core.inference import EngineDefaults, InferenceService
from modelrunner.metrics import Metrics
from modelrunner.names import parse
from modelrunner.store.create import CreateSpec, create_model
from modelrunner.store.models import ModelStore


@pytest.fixture
def service(tmp_path: Path, tiny_gguf: Path) -> tuple[InferenceService, ModelStore]:
    store = ModelStore(tmp_path / "m")
    digest = store.blobs.import_file(tiny_gguf)
    create_model(store, parse("plain"), CreateSpec(files={"t.gguf": digest}))
    create_model(store, parse("tuned"), CreateSpec(from_="plain", parameters={"num_ctx": 256}))
    scheduler: Any = None  # load_options never touches the scheduler
    return InferenceService(store, scheduler, Metrics(), EngineDefaults(context_size=4096)), store


def test_precedence(service: tuple[InferenceService, ModelStore]) -> None:
    svc, store = service
    plain, tuned = store.get("plain"), store.get("tuned")
    assert svc.load_options(plain, {}, False).num_ctx == 512  # default capped at trained length
    assert svc.load_options(tuned, {}, False).num_ctx == 256  # Modelfile
    svc.context_overrides[tuned.digest] = 384
    assert svc.load_options(tuned, {}, False).num_ctx == 384  # runtime setting beats Modelfile
    assert svc.load_options(tuned, {"num_ctx": 1024}, False).num_ctx == 1024  # request wins
