"""Access control and bounded input for every dialect: one ASGI middleware in front of the
routers (DNS-rebinding guard, credentials, per-key limits, body bounds, a 4xx for bad input)."""
