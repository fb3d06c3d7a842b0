"""DMR pull and push (``POST /models/create``, ``POST /models/{name}/push``)."""

from __future__ import annotations

from fastapi import APIRouter

from modelrunner.api.dmr.wire import DMRRoute

router = APIRouter(route_class=DMRRoute)
