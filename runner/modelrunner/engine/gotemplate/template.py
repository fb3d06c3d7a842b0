"""The public template object."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from . import analysis
from .evaluator import Evaluator
from .funcs import BUILTINS, Builtin
from .nodes import Node
from .parser import parse


class GoTemplate:
    """A parsed Go ``text/template``, as Ollama uses it for Modelfile ``TEMPLATE`` strings.

    Parsing happens in the constructor and raises :class:`TemplateError` with the line number.
    ``funcs`` adds functions to the builtins (or replaces one, e.g. ``currentDate`` in tests).
    """

    def __init__(
        self, source: str, *, funcs: Mapping[str, Callable[..., Any]] | None = None
    ) -> None:
        self.source = source
        self._funcs: dict[str, Builtin] = dict(BUILTINS)
        for name, function in (funcs or {}).items():
            self._funcs[name] = Builtin(function, 0)
        self._nodes: tuple[Node, ...] = parse(source, self._funcs)

    def render(self, data: Any) -> str:
        """Execute the template with ``data`` as dot (usually a mapping such as Ollama's)."""
        return Evaluator(self._funcs, data).execute(self._nodes)

    def vars(self) -> list[str]:
        """The identifiers it uses, lower-cased and sorted, exactly as Ollama's ``Vars()``.

        Includes nested fields and variable names (``$``, ``$i``); Ollama decides capabilities
        from it (``tools``, ``suffix`` -> insert) and renders with ``.Messages`` when it holds
        ``messages``.
        """
        return sorted({name.lower() for name in analysis.identifiers(self._nodes)})

    @property
    def root_fields(self) -> frozenset[str]:
        """Fields read from the root data: ``.X`` where dot is the root, and ``$.X``."""
        return frozenset(analysis.root_fields(self._nodes))

    def with_field_appended(self, name: str = "Response") -> GoTemplate:
        """A copy ending with ``{{ .Name }}`` (Ollama appends ``.Response`` when missing)."""
        line = self.source.count("\n") + 1
        return self._derive(analysis.append_field(self._nodes, name, line))

    def cut_after_field(self, name: str = "Response") -> GoTemplate:
        """A copy without anything after the first ``.Name`` field (Ollama's legacy final turn)."""
        return self._derive(analysis.cut_after_field(self._nodes, name))

    def _derive(self, nodes: tuple[Node, ...]) -> GoTemplate:
        copy = object.__new__(GoTemplate)
        copy.source = self.source
        copy._funcs = self._funcs
        copy._nodes = nodes
        return copy

    def __repr__(self) -> str:
        return f"GoTemplate({self.source!r})"


def template_variables(source: str) -> set[str]:
    """Ollama's ``Vars()`` of a template source, as a set: e.g. ``{"messages", "tools", ...}``."""
    return set(GoTemplate(source).vars())
