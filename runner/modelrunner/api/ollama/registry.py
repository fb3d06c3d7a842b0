"""Ollama pull and push (``POST /api/pull``, ``POST /api/push``)."""

from __future__ import annotations

from fastapi import APIRouter

from modelrunner.api.ollama.wire import OllamaRoute

router = APIRouter(route_class=OllamaRoute)
