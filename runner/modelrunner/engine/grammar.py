"""Structured output: Ollama's ``format`` (``"json"`` or a JSON schema) as a llama.cpp grammar."""

from __future__ import annotations

import json
from typing import Any

from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

from modelrunner.errors import InvalidRequest


def grammar_for(format_: Any) -> str | None:
    if format_ is None or format_ == "":
        return None
    if format_ == "json":
        return str(JSON_GBNF)
    if isinstance(format_, dict):
        try:
            return str(json_schema_to_gbnf(json.dumps(format_)))
        # The converter asserts and dereferences its way through malformed schemas.
        except (ValueError, KeyError, TypeError, NotImplementedError, AssertionError,
                AttributeError, IndexError, RecursionError) as exc:  # fmt: skip
            raise InvalidRequest(f"invalid JSON schema in format: {exc}") from None
    raise InvalidRequest(f"invalid format: {json.dumps(format_)}")
