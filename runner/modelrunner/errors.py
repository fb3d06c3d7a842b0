"""Typed errors raised by the core. Each API dialect renders them in its own wire shape."""

from __future__ import annotations


class ModelRunnerError(Exception):
    """Base class; ``status`` is the HTTP status a dialect should use by default."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(ModelRunnerError):
    status = 400


class InvalidName(InvalidRequest):
    pass


class InvalidDigest(InvalidRequest):
    pass


class DigestMismatch(InvalidRequest):
    pass


class Unsupported(InvalidRequest):
    """The model cannot do what was asked (tools, thinking, insert, images...)."""


class NotFound(ModelRunnerError):
    status = 404


class ModelNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"model '{name}' not found")
        self.name = name


class BlobNotFound(NotFound):
    def __init__(self, digest: str) -> None:
        super().__init__(f'blob "{digest}" not found')
        self.digest = digest


class Conflict(ModelRunnerError):
    status = 409


class Busy(ModelRunnerError):
    status = 503


class StorageFull(ModelRunnerError):
    status = 507


class UpstreamError(ModelRunnerError):
    """A registry answered with an error; ``status`` mirrors what the client should see."""

    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.status = status
