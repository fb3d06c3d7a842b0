"""A Model's Modelfile turned into /api/create fields (Ollama >= 0.10 has no ``modelfile`` field)."""

from __future__ import annotations

import pytest

from modeloperator.modelfile import ModelfileError, to_create_fields

FULL = '''# a comment
FROM gemma3:270m
PARAMETER temperature 0.2
PARAMETER num_ctx 8192
PARAMETER stop "<end_of_turn>"
PARAMETER stop User:
PARAMETER penalize_newline false
SYSTEM """You are terse.
Answer in one line."""
TEMPLATE """{{ .System }} {{ .Prompt }}"""
MESSAGE user "Hi"
MESSAGE assistant Hello there
LICENSE Apache-2.0
license """second
license"""
'''


def test_every_instruction() -> None:
    assert to_create_fields(FULL) == {
        "from": "gemma3:270m",
        "parameters": {
            "temperature": 0.2,
            "num_ctx": 8192,
            "stop": ["<end_of_turn>", "User:"],
            "penalize_newline": False,
        },
        "system": "You are terse.\nAnswer in one line.",
        "template": "{{ .System }} {{ .Prompt }}",
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello there"},
        ],
        "license": ["Apache-2.0", "second\nlicense"],
    }


def test_minimal() -> None:
    assert to_create_fields("from base\nsystem Be brief.") == {
        "from": "base",
        "system": "Be brief.",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("SYSTEM hi", "no FROM line"),
        ('FROM base\nSYSTEM """open', 'line 2: unterminated """'),
        ("FROM base\nADAPTER ./lora.gguf", "line 2: ADAPTER is not supported"),
        ("FROM base\nMESSAGE robot hi", "line 2: MESSAGE role 'robot' is not valid"),
        ("FROM base\nPARAMETER temperature", "line 2: PARAMETER temperature needs a value"),
        ("FROM base\nQUANTIZE q4", "line 2: unknown instruction QUANTIZE"),
        ("FROM", "line 1: FROM needs an argument"),
        ("FROM base\n!!!", "line 2: expected an instruction"),
    ],
)
def test_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(ModelfileError, match=message.replace("(", r"\(")):
        to_create_fields(text)
