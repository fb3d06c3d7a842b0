"""Media types of the two model artifact formats the store understands."""

from __future__ import annotations

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)

# Ollama's layers.
OLLAMA_CONFIG = "application/vnd.docker.container.image.v1+json"
OLLAMA_MODEL = "application/vnd.ollama.image.model"
OLLAMA_ADAPTER = "application/vnd.ollama.image.adapter"
OLLAMA_PROJECTOR = "application/vnd.ollama.image.projector"
OLLAMA_TEMPLATE = "application/vnd.ollama.image.template"
OLLAMA_PROMPT = "application/vnd.ollama.image.prompt"  # the template's older name
OLLAMA_SYSTEM = "application/vnd.ollama.image.system"
OLLAMA_PARAMS = "application/vnd.ollama.image.params"
OLLAMA_MESSAGES = "application/vnd.ollama.image.messages"
OLLAMA_LICENSE = "application/vnd.ollama.image.license"

# Docker Model Runner artifacts.
DOCKER_CONFIG_V01 = "application/vnd.docker.ai.model.config.v0.1+json"
DOCKER_CONFIG_V02 = "application/vnd.docker.ai.model.config.v0.2+json"
CNCF_CONFIG = "application/vnd.cncf.model.config.v1+json"
DOCKER_CONFIGS = (DOCKER_CONFIG_V01, DOCKER_CONFIG_V02, CNCF_CONFIG)
DOCKER_GGUF = "application/vnd.docker.ai.gguf.v3"
CNCF_GGUF = "application/vnd.cncf.model.weight.v1.gguf"
DOCKER_LICENSE = "application/vnd.docker.ai.license"
DOCKER_MMPROJ = "application/vnd.docker.ai.mmproj"
DOCKER_CHAT_TEMPLATE = "application/vnd.docker.ai.chat.template.jinja"

MODEL_LAYERS = (OLLAMA_MODEL, DOCKER_GGUF, CNCF_GGUF)
PROJECTOR_LAYERS = (OLLAMA_PROJECTOR, DOCKER_MMPROJ)
LICENSE_LAYERS = (OLLAMA_LICENSE, DOCKER_LICENSE)
TEMPLATE_LAYERS = (OLLAMA_TEMPLATE, OLLAMA_PROMPT)
FILEPATH_ANNOTATION = "org.cncf.model.filepath"
