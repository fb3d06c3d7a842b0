"""Prompt rendering: Ollama's Go templates, a GGUF's Jinja chat template, or the fallbacks of a
model with neither (``{{ .Prompt }}`` for ``/api/generate``, llama.cpp's ChatML for chats).

Message assembly follows Ollama: Modelfile ``MESSAGE`` history first, the Modelfile ``SYSTEM``
unless the caller sent a system message, consecutive messages of one role merged. A template that
uses ``.Messages`` gets the whole conversation; an older one (``.System``/``.Prompt``/``.Response``)
is rendered once per turn, the last turn cut where the response would go.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import lru_cache
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from modelrunner.engine.gotemplate import GoTemplate, JSONDict, JSONList, template_variables
from modelrunner.errors import InvalidRequest

DEFAULT_TEMPLATE = "{{ .Prompt }}"
# What llama.cpp's server (and so Ollama 0.33's chat) falls back to when a GGUF has no template.
CHATML = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


@dataclass
class PromptSource:
    """What rendering needs to know about a model."""

    template: str | None = None  # Ollama Go template (Modelfile TEMPLATE)
    jinja: str | None = None  # chat template from the GGUF or a DMR artifact
    system: str | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)
    bos_token: str = ""
    eos_token: str = ""

    @property
    def uses_go(self) -> bool:
        return bool(self.template) or not self.jinja

    def for_chat(self) -> PromptSource:
        """Chats on a model with neither template render as llama.cpp's fallback, ChatML."""
        if self.template or self.jinja:
            return self
        return replace(self, jinja=CHATML)


@lru_cache(maxsize=64)
def compile_go(source: str) -> GoTemplate:
    return GoTemplate(source)


@lru_cache(maxsize=64)
def go_fields(source: str) -> frozenset[str]:
    return frozenset(v.lower() for v in template_variables(source))


def check_template(source: str) -> None:
    """Raise Ollama's ``template error`` for a template that does not parse."""
    try:
        compile_go(source)
    except ValueError as exc:
        raise InvalidRequest(f"template error: {exc}") from None


def assemble(model: PromptSource, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    msgs = [dict(m) for m in model.messages] + [dict(m) for m in messages]
    if model.system and not (msgs and msgs[0].get("role") == "system"):
        msgs.insert(0, {"role": "system", "content": model.system})
    return msgs


def _collate(msgs: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for m in msgs:
        if m.get("role") == "system":
            system.append(str(m.get("content", "")))
        same_role = out and out[-1].get("role") == m.get("role") != "tool"
        if same_role and not m.get("tool_calls"):
            out[-1] = {
                **out[-1],
                "content": f"{out[-1].get('content', '')}\n\n{m.get('content', '')}",
            }
        else:
            out.append(m)
    return "\n\n".join(system), out


def _go_message(m: dict[str, Any]) -> dict[str, Any]:
    calls = [
        {
            "id": c.get("id", ""),
            "function": JSONDict(
                {
                    "index": c.get("function", {}).get("index", i),
                    "name": c.get("function", {}).get("name", ""),
                    "arguments": JSONDict(c.get("function", {}).get("arguments") or {}),
                }
            ),
        }
        for i, c in enumerate(m.get("tool_calls") or [])
    ]
    return {
        "role": m.get("role", ""),
        "content": m.get("content", ""),
        "thinking": m.get("thinking", ""),
        "tool_calls": calls,
        "tool_name": m.get("tool_name", ""),
        "tool_call_id": m.get("tool_call_id", ""),
        "images": m.get("images") or [],
    }


def _go_tools(tools: list[dict[str, Any]] | None) -> JSONList:
    return JSONList([_jsonify(t) for t in tools or []])


def _jsonify(value: Any) -> Any:
    if isinstance(value, dict):
        return JSONDict({k: _jsonify(v) for k, v in value.items()})
    if isinstance(value, list):
        return JSONList([_jsonify(v) for v in value])
    return value


def render_go(
    template: str,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None = None,
    think: bool | str | None = None,
    suffix: str | None = None,
) -> str:
    tmpl = compile_go(template)
    system, msgs = _collate(messages)
    think_on = bool(think) if think is not None else False
    base: dict[str, Any] = {
        "Tools": _go_tools(tools),
        "Think": think_on,
        "ThinkLevel": think if isinstance(think, str) else "",
        "IsThinkSet": think is not None,
        "Suffix": suffix or "",
    }
    if "messages" in go_fields(template):
        data = {**base, "System": system, "Messages": [_go_message(m) for m in msgs],
                "Prompt": "", "Response": ""}  # fmt: skip
        return tmpl.render(data)
    return _render_turns(tmpl, msgs, base)


def _render_turns(tmpl: GoTemplate, msgs: list[dict[str, Any]], base: dict[str, Any]) -> str:
    """Older templates see one turn at a time; the last is cut where its response would start."""
    if "response" not in go_fields(tmpl.source):
        tmpl = tmpl.with_field_appended("Response")
    parts: list[str] = []
    turn = {"System": "", "Prompt": "", "Response": ""}
    for m in msgs:
        role, content = m.get("role"), str(m.get("content", ""))
        if (role == "system" and (turn["Prompt"] or turn["Response"])) or (
            role == "user" and turn["Response"]
        ):
            parts.append(tmpl.render({**base, **turn, "Messages": []}))
            turn = {"System": "", "Prompt": "", "Response": ""}
        key = {"system": "System", "user": "Prompt", "assistant": "Response"}.get(str(role))
        if key:
            turn[key] = content
    parts.append(tmpl.cut_after_field("Response").render({**base, **turn, "Messages": []}))
    return "".join(parts)


@lru_cache(maxsize=32)
def _jinja(source: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(message: str) -> None:
        raise jinja2.TemplateError(message)

    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    env.filters["tojson"] = lambda v, indent=None: json.dumps(v, ensure_ascii=False, indent=indent)
    return env.from_string(source)


def render_jinja(
    source: PromptSource,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None = None,
    think: bool | str | None = None,
) -> str:
    openai_msgs = []
    for m in messages:
        item: dict[str, Any] = {"role": m.get("role"), "content": m.get("content", "")}
        if m.get("tool_calls"):
            item["tool_calls"] = [
                {"type": "function", "id": c.get("id", ""), "function": c.get("function", {})}
                for c in m["tool_calls"]
            ]
        if m.get("tool_name"):
            item["name"] = m["tool_name"]
        openai_msgs.append(item)
    kwargs: dict[str, Any] = {}
    if think is not None:
        kwargs["enable_thinking"] = bool(think)
    try:
        return _jinja(source.jinja or "").render(
            messages=openai_msgs,
            tools=tools or None,
            add_generation_prompt=True,
            bos_token=source.bos_token,
            eos_token=source.eos_token,
            **kwargs,
        )
    except jinja2.TemplateError as exc:
        raise InvalidRequest(f"chat template error: {exc}") from None


def chat_prompt(
    source: PromptSource,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None = None,
    think: bool | str | None = None,
) -> str:
    msgs = assemble(source, messages)
    if source.template:
        return render_go(source.template, msgs, tools, think)
    return render_jinja(source.for_chat(), msgs, tools, think)


def generate_prompt(
    source: PromptSource,
    prompt: str,
    system: str | None = None,
    template: str | None = None,
    suffix: str | None = None,
    think: bool | str | None = None,
    history: bool = True,
) -> str:
    """``/api/generate`` as Ollama builds it: the system (the request's, else the Modelfile's),
    the Modelfile's ``MESSAGE`` history unless the caller continues a ``context``, then the
    prompt as a user turn. A request template, or a suffix, runs a Go template directly; else the
    model's template, its GGUF chat template, or Ollama's default ``{{ .Prompt }}``."""
    if suffix:
        return render_suffix(template or source.template or DEFAULT_TEMPLATE, prompt, suffix, think)
    msgs: list[dict[str, Any]] = []
    if system or source.system:
        msgs.append({"role": "system", "content": system or source.system})
    if history:
        msgs += [dict(m) for m in source.messages]
    msgs.append({"role": "user", "content": prompt})
    if template or source.uses_go:
        return render_go(template or source.template or DEFAULT_TEMPLATE, msgs, None, think)
    return render_jinja(source, msgs, None, think)


def render_suffix(template: str, prompt: str, suffix: str, think: bool | str | None) -> str:
    """Fill-in-the-middle: Ollama gives such a template only the prompt and the suffix."""
    return compile_go(template).render(
        {
            "Prompt": prompt,
            "Suffix": suffix,
            "Response": "",
            "Think": bool(think) if think is not None else False,
            "ThinkLevel": think if isinstance(think, str) else "",
            "IsThinkSet": think is not None,
        }
    )
