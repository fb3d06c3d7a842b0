"""modeloperator: Model and ModelRunner resources reconciled through the runners' HTTP API."""

__version__ = "0.1.0"
GROUP = "modelrunner.io"
VERSION = "v1alpha1"
