"""Errors the registry client raises; each is a typed core error every dialect can render."""

from __future__ import annotations

from modelrunner.errors import (
    InvalidRequest,
    ModelRunnerError,
    NotFound,
    Unsupported,
    UpstreamError,
)


class InsecureProtocol(InvalidRequest):
    def __init__(self) -> None:
        super().__init__("insecure protocol http")


class ManifestNotFound(NotFound):
    """The registry has no manifest for this reference (Ollama: ``file does not exist``)."""

    def __init__(self, reference: str) -> None:
        super().__init__(f"manifest not found: {reference}")
        self.reference = reference


class RegistryUnauthorized(UpstreamError):
    """The registry refused our credentials (or lack of them)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 401)


class RegistryForbidden(UpstreamError):
    def __init__(self, message: str) -> None:
        super().__init__(message, 403)


class RegistryUnavailable(UpstreamError):
    """Could not talk to the registry, or it answered with a server error."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 502)


class UnsupportedArtifact(Unsupported):
    """The reference names something that is not a model (DMR answers 422)."""

    status = 422


class TransferCancelled(ModelRunnerError):
    """The caller went away (Ollama's 499 ``request canceled``)."""

    status = 499

    def __init__(self) -> None:
        super().__init__("request canceled")
