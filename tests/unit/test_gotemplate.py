"""The Go template engine: syntax, Go semantics, errors, and Ollama's real templates.

The real templates and their expected renderings under ``templates/`` come from Ollama's
repository (``template/*.gotmpl`` with ``template/testdata``, and ``server/testdata/tools``);
``templates/SOURCES.md`` names the commits. ``ollama_execute`` below feeds them data the way
Ollama's ``template.Execute`` does, so the renderings must match byte for byte.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from modelrunner.engine.gotemplate import (
    NO_VALUE,
    GoTemplate,
    JSONArgs,
    JSONDict,
    JSONList,
    TemplateError,
    template_variables,
)

TEMPLATES = Path(__file__).parent / "templates"
TESTDATA = TEMPLATES / "testdata"

Message = dict[str, Any]


def render(source: str, data: Any = None, **funcs: Callable[..., Any]) -> str:
    return GoTemplate(source, funcs=funcs).render({} if data is None else data)


# --- Ollama's way of parsing and executing (template/template.go) ---------------------------


def ollama_parse(source: str) -> GoTemplate:
    template = GoTemplate(source)
    if not {"messages", "response"} & set(template.vars()):
        template = template.with_field_appended("Response")
    return template


def collate(messages: list[Message]) -> tuple[str, list[Message]]:
    """System messages joined, and consecutive same-role messages (except tool) merged."""
    system: list[str] = []
    collated: list[Message] = []
    for message in messages:
        if message["role"] == "system":
            system.append(message.get("content", ""))
        last = collated[-1] if collated else None
        if last is not None and last["role"] == message["role"] != "tool":
            last["content"] = last.get("content", "") + "\n\n" + message.get("content", "")
        else:
            collated.append(dict(message))
    return "\n\n".join(system), collated


def ollama_execute(
    template: GoTemplate,
    messages: list[Message],
    tools: JSONList | None = None,
    prompt: str = "",
    suffix: str = "",
) -> str:
    think = {"Think": False, "IsThinkSet": False}
    system, collated = collate(messages)
    if prompt and suffix:
        return template.render({"Prompt": prompt, "Suffix": suffix, "Response": "", **think})
    if {"messages", "document"} & set(template.vars()):
        data = {"System": system, "Messages": collated, "Tools": tools, "Response": ""}
        return template.render({**data, **think, "Query": "", "Document": "", "Instruction": ""})
    out: list[str] = []
    turn = {"System": "", "Prompt": "", "Response": ""}
    for message in collated:
        role, content = message["role"], message.get("content", "")
        if (role == "system" and (turn["Prompt"] or turn["Response"])) or (
            role == "user" and turn["Response"]
        ):
            out.append(template.render({**turn, **think}))
            turn = {"System": "", "Prompt": "", "Response": ""}
        key = {"system": "System", "user": "Prompt", "assistant": "Response"}.get(role)
        if key:
            turn[key] = content
    out.append(template.cut_after_field("Response").render({**turn, **think}))
    return "".join(out)


def go_tool(tool: Mapping[str, Any]) -> JSONDict:
    """An api.Tool as Go marshals it: struct field order, properties map sorted by key."""
    function, params = tool["function"], tool["function"]["parameters"]
    properties = {
        name: JSONDict({k: prop[k] for k in ("type", "description", "enum") if k in prop})
        for name, prop in sorted(params["properties"].items())
    }
    parameters = JSONDict(type=params["type"], required=params["required"], properties=properties)
    return JSONDict(
        type=tool["type"],
        function=JSONDict(
            name=function["name"], description=function["description"], parameters=parameters
        ),
    )


def go_message(message: Mapping[str, Any]) -> Message:
    """Tool-call arguments as Ollama's (then map-backed, so key-sorted) JSON-printing type."""
    calls = [
        {
            "function": {
                **call["function"],
                "arguments": JSONArgs(sorted(call["function"]["arguments"].items())),
            }
        }
        for call in message.get("tool_calls", [])
    ]
    return {**message, "tool_calls": calls} if calls else dict(message)


# --- real templates --------------------------------------------------------------------------

CONVERSATIONS: dict[str, list[Message]] = {
    "user": [{"role": "user", "content": "Hello, how are you?"}],
    "user-assistant-user": [
        {"role": "user", "content": "Hello, how are you?"},
        {"role": "assistant", "content": "I'm doing great. How can I help you today?"},
        {"role": "user", "content": "I'd like to show off how chat templating works!"},
    ],
}
CONVERSATIONS["system-user-assistant-user"] = [
    {"role": "system", "content": "You are a helpful assistant."},
    *CONVERSATIONS["user-assistant-user"],
]
TRAILING_SPACE_TRIMMED = {"chatqa", "llama2-chat", "mistral-instruct", "openchat", "vicuna"}
REAL_TEMPLATES = [
    "alpaca",
    "chatml",
    "cohere2",
    "command-r",
    "deepseek",
    "gemma3-instruct",
    "llama3-instruct",
    "mistral-instruct",
    "phi-3",
]


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize("case", sorted(CONVERSATIONS))
@pytest.mark.parametrize("name", REAL_TEMPLATES)
def test_real_template_conversations(name: str, case: str) -> None:
    template = ollama_parse(read(TEMPLATES / f"{name}.gotmpl"))
    actual = ollama_execute(template, [dict(m) for m in CONVERSATIONS[case]])
    if name in TRAILING_SPACE_TRIMMED and actual.endswith(" "):
        actual = actual[:-1]  # as Ollama's test does for these templates
    assert actual == read(TESTDATA / f"{name}.gotmpl" / case)


GET_WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get current weather information for a location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {
                    "type": "string",
                    "description": "The city and state, e.g. San Francisco, CA",
                },
                "unit": {
                    "type": "string",
                    "enum": ["celsius", "fahrenheit"],
                    "description": "The unit of temperature to use",
                },
            },
            "required": ["location"],
        },
    },
}
TOOL_CASES: dict[str, tuple[list[Message], bool]] = {
    "single": ([], True),
    "single-call": (
        [
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "function": {
                            "name": "get_weather",
                            "arguments": {"location": "San Francisco, CA"},
                        }
                    }
                ],
            }
        ],
        False,
    ),
    "single-result": (
        [
            {
                "role": "tool",
                "content": (
                    '{"temperature": 22, "condition": "Sunny", "humidity": 45, "wind_speed": 10}'
                ),
            }
        ],
        False,
    ),
}


@pytest.mark.parametrize("case", sorted(TOOL_CASES))
@pytest.mark.parametrize("name", ["command-r", "deepseek"])
def test_real_template_tools(name: str, case: str) -> None:
    messages, with_tools = TOOL_CASES[case]
    tools = JSONList([go_tool(GET_WEATHER)]) if with_tools else None
    template = ollama_parse(read(TEMPLATES / f"{name}.gotmpl"))
    actual = ollama_execute(template, [go_message(m) for m in messages], tools)
    assert actual == read(TESTDATA / f"{name}.gotmpl" / f"tools-{case}")


@pytest.mark.parametrize("name", ["llama3.2-tools", "mistral-tools"])
def test_real_template_tool_conversation(name: str) -> None:
    messages = json.loads(read(TESTDATA / "messages.json"))
    tools = JSONList(go_tool(tool) for tool in json.loads(read(TESTDATA / "tools.json")))
    template = ollama_parse(read(TEMPLATES / f"{name}.gotmpl"))
    actual = ollama_execute(template, [go_message(m) for m in messages], tools)
    assert actual == read(TESTDATA / f"{name}.gotmpl" / "conversation")


LEGACY_MISTRAL = "[INST] {{ if .System }}{{ .System }}\n\n{{ end }}{{ .Prompt }}[/INST] "
LEGACY_CHATML = (
    "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    "{{ if .Prompt }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n{{ end }}"
    "<|im_start|>assistant\n{{ .Response }}<|im_end|>\n"
)
HELLO: list[Message] = [
    {"role": "user", "content": "Hello friend!"},
    {"role": "assistant", "content": "Hello human!"},
    {"role": "user", "content": "What is your name?"},
]


@pytest.mark.parametrize(
    ("source", "messages", "expected"),
    [
        pytest.param(
            LEGACY_MISTRAL,
            HELLO,
            "[INST] Hello friend![/INST] Hello human![INST] What is your name?[/INST] ",
            id="no-response",
        ),
        pytest.param(
            LEGACY_MISTRAL + "{{ .Response }}",
            HELLO,
            "[INST] Hello friend![/INST] Hello human![INST] What is your name?[/INST] ",
            id="response",
        ),
        pytest.param(
            LEGACY_MISTRAL,
            [{"role": "system", "content": "You are a helpful assistant!"}, *HELLO],
            "[INST] You are a helpful assistant!\n\nHello friend![/INST] Hello human!"
            "[INST] What is your name?[/INST] ",
            id="system",
        ),
        pytest.param(
            "[INST] {{ .Prompt }}[/INST] {{ .Response }}",
            [*HELLO, {"role": "assistant", "content": "My name is Ollama and I"}],
            "[INST] Hello friend![/INST] Hello human![INST] What is your name?[/INST] "
            "My name is Ollama and I",
            id="assistant-last",
        ),
        pytest.param(
            LEGACY_CHATML,
            [{"role": "system", "content": "You are a helpful assistant!"}, *HELLO],
            "<|im_start|>system\nYou are a helpful assistant!<|im_end|>\n"
            "<|im_start|>user\nHello friend!<|im_end|>\n"
            "<|im_start|>assistant\nHello human!<|im_end|>\n"
            "<|im_start|>user\nWhat is your name?<|im_end|>\n<|im_start|>assistant\n",
            id="chatml",
        ),
    ],
)
def test_legacy_templates_render_turn_by_turn(
    source: str, messages: list[Message], expected: str
) -> None:
    assert ollama_execute(ollama_parse(source), [dict(m) for m in messages]) == expected


SUFFIX_TEMPLATE = (
    "{{- if .Suffix }}<PRE> {{ .Prompt }} <SUF>{{ .Suffix }} <MID>\n"
    "{{- else }}{{ .Prompt }}\n{{- end }}"
)


def test_suffix_template() -> None:
    template = ollama_parse(SUFFIX_TEMPLATE)
    assert ollama_execute(template, [{"role": "user", "content": "hello"}]) == "hello"
    actual = ollama_execute(template, [], prompt="def add(", suffix="return x")
    assert actual == "<PRE> def add( <SUF>return x <MID>"


# --- variables (Ollama's Vars) and rewrites --------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ .Prompt }}", ["prompt", "response"]),
        ("{{ .System }} {{ .Prompt }}", ["prompt", "response", "system"]),
        ("{{ .System }} {{ .Prompt }} {{ .Response }}", ["prompt", "response", "system"]),
        (
            "{{ with .Tools }}{{ . }}{{ end }} {{ .System }} {{ .Prompt }}",
            ["prompt", "response", "system", "tools"],
        ),
        (
            "{{ range .Messages }}{{ .Role }} {{ .Content }}{{ end }}",
            ["content", "messages", "role"],
        ),
        (
            '{{ range .Messages }}{{ if eq .Role "tool" }}Tool Result: {{ .ToolName }} '
            "{{ .Content }}{{ end }}{{ end }}",
            ["content", "messages", "role", "toolname"],
        ),
        (
            "{{- if .Messages }}{{- range .Messages }}{{ .Role }}{{ .Content }}{{ end }}"
            "{{ else -}}{{ if .System }}{{ .System }}{{ end }}{{ .Prompt }}{{ .Response }}"
            "{{- end -}}",
            ["content", "messages", "prompt", "response", "role", "system"],
        ),
    ],
)
def test_vars_match_ollama(source: str, expected: list[str]) -> None:
    assert ollama_parse(source).vars() == expected


def test_template_variables_and_root_fields() -> None:
    source = read(TEMPLATES / "deepseek.gotmpl")
    variables = template_variables(source)
    assert {"messages", "tools", "isthinkset", "think", "thinking", "$", "$last"} <= variables
    assert "suffix" not in variables
    assert GoTemplate(source).root_fields == {"System", "Tools", "Messages", "IsThinkSet", "Think"}
    fields = GoTemplate("{{ with .A }}{{ .B }}{{ else }}{{ .C }}{{ end }}{{ (.D).E }}").root_fields
    assert fields == {"A", "C", "D"}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("a{{ .Prompt }}b{{ .Response }}c{{ .X }}", "a<P>b"),
        ("{{ if .Prompt }}x{{ .Response }}y{{ end }}z", "x"),
        ("{{ .Response }}{{ if .Prompt }}gone{{ end }}", ""),
        ("{{ .Response | printf }}after", ""),
        ("{{ print .Response .Prompt }}", ""),
        ("{{ if .Prompt }}{{ .Response }}{{ else }}unreachable{{ end }}!", ""),
    ],
)
def test_cut_after_field(source: str, expected: str) -> None:
    template = GoTemplate(source).cut_after_field("Response")
    assert template.render({"Prompt": "<P>", "Response": "", "X": "x"}) == expected


# --- syntax ------------------------------------------------------------------------------------

DATA: dict[str, Any] = {
    "Name": "gopher",
    "Empty": "",
    "N": 3,
    "F": 2.5,
    "T": True,
    "List": ["a", "b", "c"],
    "Map": {"b": 2, "a": 1},
    "Nested": {"Inner": {"Value": "deep"}},
    "Messages": [
        {"role": "user", "content": "hi", "tool_calls": []},
        {"role": "assistant", "content": "hello", "tool_calls": [{"function": {"name": "f"}}]},
    ],
}

SYNTAX_CASES: list[tuple[str, str, str]] = [
    ("text", "plain text", "plain text"),
    ("field", "{{ .Name }}", "gopher"),
    ("nested-field", "{{ .Nested.Inner.Value }}", "deep"),
    ("dot", "{{ with .Name }}{{ . }}{{ end }}", "gopher"),
    ("root-variable", "{{ range .List }}{{ $.Name }}{{ end }}", "gophergophergopher"),
    ("snake-case-key", "{{ range .Messages }}{{ len .ToolCalls }}{{ end }}", "01"),
    (
        "lower-case-key",
        "{{ range .Messages }}{{ .Role }}:{{ .Content }};{{ end }}",
        "user:hi;assistant:hello;",
    ),
    ("declare", "{{ $x := .Name }}{{ $x }}", "gopher"),
    ("assign", "{{ $x := 1 }}{{ range .List }}{{ $x = . }}{{ end }}{{ $x }}", "c"),
    (
        "declare-in-if-scoped",
        "{{ $x := 1 }}{{ if true }}{{ $x := 2 }}{{ $x }}{{ end }}{{ $x }}",
        "21",
    ),
    ("range-index", "{{ range $i, $v := .List }}{{ $i }}={{ $v }} {{ end }}", "0=a 1=b 2=c "),
    ("range-one-var", "{{ range $v := .List }}{{ $v }}{{ end }}", "abc"),
    ("range-map-sorted", "{{ range $k, $v := .Map }}{{ $k }}{{ $v }}{{ end }}", "a1b2"),
    ("range-else", "{{ range .Missing }}x{{ else }}none{{ end }}", "none"),
    ("range-int", "{{ range 3 }}{{ . }}{{ end }}", "012"),
    ("range-break", '{{ range .List }}{{ if eq . "b" }}{{ break }}{{ end }}{{ . }}{{ end }}', "a"),
    (
        "range-continue",
        '{{ range .List }}{{ if eq . "b" }}{{ continue }}{{ end }}{{ . }}{{ end }}',
        "ac",
    ),
    (
        "if-else-if",
        "{{ if eq .N 1 }}one{{ else if eq .N 3 }}three{{ else }}other{{ end }}",
        "three",
    ),
    ("if-else", "{{ if .Empty }}yes{{ else }}no{{ end }}", "no"),
    ("with-else", "{{ with .Empty }}yes{{ else }}no{{ end }}", "no"),
    ("else-with", "{{ with .Empty }}a{{ else with .Name }}{{ . }}{{ end }}", "gopher"),
    ("if-declare", "{{ if $n := .N }}{{ $n }}{{ end }}", "3"),
    ("pipeline", '{{ .Name | printf "%s!" }}', "gopher!"),
    ("pipeline-chain", '{{ "x" | printf "%s%s" "y" | len }}', "2"),
    ("parens", "{{ eq (len .List) 3 }}", "true"),
    ("chain-on-parens", "{{ (index .Messages 1).Content }}", "hello"),
    ("string-escapes", '{{ "a\\tb\\n\\"c\\" \\u00e9 \\x41" }}', 'a\tb\n"c" é A'),
    ("raw-string", "{{ `a\\n{{b}}` }}", "a\\n{{b}}"),
    (
        "numbers",
        "{{ 0x1F }} {{ 017 }} {{ 0b101 }} {{ 1_000 }} {{ -2 }} {{ 1.5 }} {{ 1e3 }}",
        "31 15 5 1000 -2 1.5 1000",
    ),
    ("char", "{{ 'a' }}", "97"),
    ("bool-nil", "{{ true }} {{ false }} {{ print nil }}", "true false <nil>"),
    ("comment", "a{{/* a comment */}}b", "ab"),
    ("comment-trim", "a  {{- /* a comment */ -}}  b", "ab"),
    ("trim-left", "a  \n\t{{- .Name }}", "agopher"),
    ("trim-right", "{{ .Name -}} \n  b", "gopherb"),
    ("trim-both", "x \n{{- .Name -}}\n y", "xgophery"),
    ("no-trim-without-space", "{{ -1 }} {{ 3 -}} .", "-1 3."),
    ("trim-newline-marker", "a {{-\n.Name\n-}} b", "agopherb"),
    ("newline-in-action", "{{ if\n .T }}ok{{ end }}", "ok"),
]


@pytest.mark.parametrize(
    ("source", "expected"),
    [pytest.param(source, expected, id=case_id) for case_id, source, expected in SYNTAX_CASES],
)
def test_syntax(source: str, expected: str) -> None:
    assert render(source, DATA) == expected


FUNCTION_CASES: list[tuple[str, str, str]] = [
    ("and", "{{ and 1 0 2 }} {{ and 1 2 }}", "0 2"),
    ("or", '{{ or "" .Empty "x" }} {{ or 0 "" }}', "x "),
    ("and-short-circuits", "{{ and false (index .List 99) }}", "false"),
    ("or-short-circuits", "{{ or true (index .List 99) }}", "true"),
    ("not", "{{ not .Empty }} {{ not .List }}", "true false"),
    ("eq-multi", '{{ eq .Name "a" "gopher" }} {{ eq .N 1 2 }}', "true false"),
    ("eq-missing", '{{ eq .Missing "x" }}', "false"),
    ("ne", '{{ ne .Name "x" }}', "true"),
    (
        "ordering",
        '{{ lt 1 2 }} {{ le 2 2 }} {{ gt "b" "a" }} {{ ge 1.5 2.5 }}',
        "true true true false",
    ),
    ("len", '{{ len .List }} {{ len .Map }} {{ len "héllo" }}', "3 2 6"),
    (
        "index",
        '{{ index .List 1 }} {{ index .Map "b" }} {{ index .Nested "Inner" "Value" }}',
        "b 2 deep",
    ),
    ("index-missing-key", '{{ index .Map "zz" }}', "<no value>"),
    (
        "slice",
        '{{ slice .List 1 }} {{ slice .List 0 2 }} {{ slice "hello" 1 3 }}',
        "[b c] [a b] el",
    ),
    (
        "last-message",
        "{{ range $i, $_ := .List }}{{ eq (len (slice $.List $i)) 1 }} {{ end }}",
        "false false true ",
    ),
    ("print", '{{ print "a" 1 2 "b" 3 }}', "a1 2b3"),
    ("println", '{{ println "a" 1 }}', "a 1\n"),
    (
        "printf",
        '{{ printf "%s|%d|%v|%q|%t|%5.2f|%-4d|%x|%%" "s" 42 .List "q" true 3.14159 7 255 }}',
        's|42|[a b c]|"q"|true| 3.14|7   |ff|%',
    ),
    ("printf-errors", '{{ printf "%d %s" "x" }}', "%!d(string=x) %!s(MISSING)"),
    (
        "printf-containers",
        '{{ printf "%d|%-3v|%s" .List (slice .List 0 2) .Map }}',
        "[%!d(string=a) %!d(string=b) %!d(string=c)]|[a   b  ]|map[a:%!s(int=1) b:%!s(int=2)]",
    ),
    (
        "printf-floats",
        '{{ printf "%x %v %e %.2f" 2.5 1e6 1234.5678 -0.004 }}',
        "0x1.4p+01 1e+06 1.234568e+03 -0.00",
    ),
    ("printf-extra", '{{ printf "a" 1 }}', "a%!(EXTRA int=1)"),
    ("html", "{{ html \"<a href='x'>&</a>\" }}", "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;"),
    ("js", '{{ js "it\'s <b>" }}', "it\\'s \\u003Cb\\u003E"),
    ("urlquery", '{{ urlquery "a b&c/é" }}', "a+b%26c%2F%C3%A9"),
    # mapping keys keep their order (Go structs and Ollama's ordered maps; pre-sort Go maps)
    (
        "json",
        "{{ json .Map }} {{ json .List }} {{ json .Missing }}",
        '{"b":2,"a":1} ["a","b","c"] null',
    ),
    (
        "json-escaping",
        '{{ json "<a> & \\"q\\"\\n\\u2028" }}',
        '"\\u003ca\\u003e \\u0026 \\"q\\"\\n\\u2028"',
    ),
    (
        "json-floats",
        "{{ json 1.0 }} {{ json 0.5 }} {{ json 1e21 }} {{ json 1e-7 }} {{ json 123456789.0 }}",
        "1 0.5 1e+21 1e-7 123456789",
    ),
    (
        "toTypeScriptType",
        '{{ toTypeScriptType .Prop }} {{ toTypeScriptType "x" }}',
        "string | number any",
    ),
    ("call", "{{ call .Fn 2 3 }}", "5"),
]


@pytest.mark.parametrize(
    ("source", "expected"),
    [pytest.param(source, expected, id=case_id) for case_id, source, expected in FUNCTION_CASES],
)
def test_functions(source: str, expected: str) -> None:
    data = {**DATA, "Prop": {"type": ["string", "integer"]}, "Fn": lambda a, b: a + b}
    assert render(source, data) == expected


@pytest.mark.parametrize(
    ("value", "truth"),
    [
        (None, False),
        (NO_VALUE, False),
        (False, False),
        (0, False),
        (0.0, False),
        ("", False),
        ([], False),
        ({}, False),
        (True, True),
        (-1, True),
        ("x", True),
        ([0], True),
        ({"a": None}, True),
        (object(), True),
    ],
)
def test_truthiness(value: object, truth: bool) -> None:
    assert render("{{ if .V }}T{{ else }}F{{ end }}", {"V": value}) == ("T" if truth else "F")


@pytest.mark.parametrize(
    ("value", "printed"),
    [
        ("s", "s"),
        (42, "42"),
        (True, "true"),
        (1.0, "1"),
        (2.5, "2.5"),
        (1e6, "1e+06"),
        (123456.0, "123456"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (-0.0, "-0"),
        (float("inf"), "+Inf"),
        ([1, "a", None], "[1 a <nil>]"),
        ({"b": 1, "a": [2]}, "map[a:[2] b:1]"),
        (None, ""),
        (JSONArgs({"b": 1, "a": "<x>"}), '{"b":1,"a":"\\u003cx\\u003e"}'),
        (JSONList([JSONDict(a=1)]), '[{"a":1}]'),
    ],
)
def test_printing(value: object, printed: str) -> None:
    assert render("{{ .V }}", {"V": value}) == printed


def test_missing_keys() -> None:
    # A missing key of the root map prints as Go's "<no value>", one deeper as a zero value.
    assert render("[{{ .Nope }}] [{{ .Nested.Nope }}] [{{ .Nope.Deeper }}]", DATA) == (
        "[<no value>] [] []"
    )
    assert render("{{ $x := .Nope }}{{ $x }}{{ if .Nope }}y{{ end }}", DATA) == "<no value>"


def test_objects_attributes_and_methods() -> None:
    class Tool:
        tool_name = "lookup"

        def Describe(self, prefix: str) -> str:  # a Go-style method name
            return f"{prefix}: {self.tool_name}"

    assert render('{{ .T.ToolName }} {{ .T.Describe "tool" }}', {"T": Tool()}) == (
        "lookup tool: lookup"
    )


def test_current_date() -> None:
    today = datetime.date.today()
    assert render("{{ currentDate }}") == today.isoformat()
    assert (
        render('{{ yesterdayDate "2006-01-02" }}')
        == (today - datetime.timedelta(days=1)).isoformat()
    )
    assert render("{{ currentDate }}", currentDate=lambda: "2024-01-02") == "2024-01-02"


def test_user_functions() -> None:
    assert render("{{ shout .Name }}", DATA, shout=lambda s: s.upper()) == "GOPHER"


# --- errors ------------------------------------------------------------------------------------

PARSE_ERRORS: list[tuple[str, str, int]] = [
    ("{{ .Name", "unclosed action", 1),
    ("a\n{{ if .X }}b", "unexpected EOF", 2),
    ("{{ end }}", "unexpected {{end}}", 1),
    ("{{ else }}", "unexpected {{else}}", 1),
    ("\n\n{{ nope .X }}", 'function "nope" not defined', 3),
    ("{{ $x }}", 'undefined variable "$x"', 1),
    ("{{ $x = 1 }}", 'undefined variable "$x"', 1),
    ("{{ if .A }}{{ $x := 1 }}{{ end }}{{ $x }}", 'undefined variable "$x"', 1),
    ("{{ break }}", "{{break}} outside {{range}}", 1),
    ("{{ if }}{{ end }}", "missing value for if", 1),
    ("{{ }}", "missing value for command", 1),
    ('{{ "abc }}', "unterminated quoted string", 1),
    ("{{ `abc }}", "unterminated raw quoted string", 1),
    ("{{ (.A }}", "unclosed left paren", 1),
    ("{{ .A) }}", "unexpected right paren", 1),
    ("{{ .A | 1 }}", "non executable command in pipeline stage 2", 1),
    ("{{ 1.X }}", "bad number syntax", 1),
    ("{{ .A&b }}", "bad character U+0026 '&'", 1),
    ("{{ $x, $y := .A }}", "too many declarations in command", 1),
    ('{{ define "x" }}{{ end }}', "{{define}} is not supported", 1),
    ("{{/* open", "unclosed comment", 1),
    ("{{/* c */ x}}", "comment ends before closing delimiter", 1),
    ("{{ range .A }}{{ else if .B }}{{ end }}", "unexpected {{else if}} in {{range}}", 1),
    ("{{ if .A }}{{ else }}{{ else }}{{ end }}", "expected end; found {{else}}", 1),
    ('{{ "a".B }}', "unexpected . after term 'a'", 1),
    ("{{ .A ^ }}", "unrecognized character in action: U+005E '^'", 1),
]


@pytest.mark.parametrize(
    ("source", "message", "line"),
    [pytest.param(*case, id=case[1]) for case in PARSE_ERRORS],
)
def test_parse_errors(source: str, message: str, line: int) -> None:
    with pytest.raises(TemplateError) as caught:
        GoTemplate(source)
    assert message in str(caught.value)
    assert caught.value.line == line
    assert str(caught.value).startswith(f"line {line}: ")
    assert isinstance(caught.value, ValueError)


EXEC_ERRORS: list[tuple[str, str]] = [
    ("{{ index .List 5 }}", "error calling index: index out of range: 5"),
    ('{{ eq .N "3" }}', "error calling eq: incompatible types for comparison: int and string"),
    ("{{ lt true false }}", "error calling lt: invalid type for comparison"),
    ("{{ len .N }}", "error calling len: len of type int"),
    ("{{ slice .List 2 1 }}", "error calling slice: invalid slice index: 2 > 1"),
    ("{{ not 1 2 }}", "wrong number of args for not: want 1 got 2"),
    ("{{ .List.Field }}", "can't evaluate field Field in type []interface {}"),
    ("{{ range .Name }}{{ end }}", "range can't iterate over gopher"),
    ('{{ .Map.a "x" }}', "a is not a method but has arguments"),
    ("{{ nil }}", "nil is not a command"),
    ("{{ 1 2 }}", "can't give argument to non-function 1"),
]


@pytest.mark.parametrize(("source", "message"), EXEC_ERRORS)
def test_execution_errors(source: str, message: str) -> None:
    template = GoTemplate(source)
    with pytest.raises(TemplateError, match=r"^line 1: ") as caught:
        template.render(DATA)
    assert message in str(caught.value)


def test_error_line_points_at_the_action() -> None:
    with pytest.raises(TemplateError) as caught:
        GoTemplate("line one\nline two {{ index .List 9 }}").render(DATA)
    assert caught.value.line == 2
