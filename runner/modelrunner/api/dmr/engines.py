"""DMR engine routes (``/engines/status``, ``/engines/ps``, ``/engines/unload``, ``_configure``)."""

from __future__ import annotations

from fastapi import APIRouter

from modelrunner.api.dmr.wire import DMRRoute

router = APIRouter(route_class=DMRRoute)
