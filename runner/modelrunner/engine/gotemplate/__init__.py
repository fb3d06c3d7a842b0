"""A pure-Python Go ``text/template``, the subset Ollama's Modelfile ``TEMPLATE`` strings use.

>>> GoTemplate("{{ range .Messages }}<{{ .Role }}>{{ .Content }}{{ end }}").render(
...     {"Messages": [{"role": "user", "content": "hi"}]}
... )
'<user>hi'

Data is plain Python: mappings for Go maps and structs (``.ToolCalls`` also finds
``tool_calls``), lists for slices. Wrap values whose Go type prints JSON (tool-call arguments,
``.Tools``, a tool's ``.Function``) in :class:`JSONDict` / :class:`JSONList`.
"""

from .errors import TemplateError
from .template import GoTemplate, template_variables
from .values import NO_VALUE, JSONDict, JSONList

JSONArgs = JSONDict
"""Alias: tool-call arguments, printed as JSON like Ollama's ``ToolCallFunctionArguments``."""

__all__ = [
    "NO_VALUE",
    "GoTemplate",
    "JSONArgs",
    "JSONDict",
    "JSONList",
    "TemplateError",
    "template_variables",
]
