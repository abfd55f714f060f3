"""The load stage of a lab file: the file, its YAML syntax and the line of every key (LabSource),
and the problems found in it, each located by file, line and attribute path (Problems).

Reads the lab file only; cdk/lab.py validates what it holds.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cdk.errors import LabFileError, Problem

# An attribute path inside the lab document: ("hosts", 1, "capacity") is `hosts[1].capacity`.
AttrPath = tuple[str | int, ...]


def format_path(path: Iterable[str | int]) -> str:
    """`("hosts", 1, "capacity")` -> `hosts[1].capacity`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    """A hint naming the closest valid choice, if one is close enough."""
    close = difflib.get_close_matches(str(word), sorted(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


def parse_path(text: str) -> AttrPath:
    """`topology.nodes[2].name` -> ("topology", "nodes", 2, "name")."""
    path: list[str | int] = []
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", text):
        path.append(int(index) if index else name)
    return tuple(path)


def locate(problem: Problem, source: LabSource | None) -> Problem:
    """A problem of `source`'s file found without its line (a check that sees plain data): the
    line of its field, or of the nearest key above it that the file spells."""
    if source is None or problem.line is not None or problem.file != source.file:
        return problem
    return dataclasses.replace(problem, line=source.line(parse_path(problem.field)))


# ---------------------------------------------------------------- load stage


@dataclass(frozen=True)
class LabSource:
    """A parsed lab document plus the line of each attribute path (empty for Python labs)."""

    file: str
    data: Any
    directory: Path  # relative paths in the lab (the placement file) are resolved from here
    lines: Mapping[AttrPath, int] = field(default_factory=dict)
    top: str = "(lab)"  # how a problem of the whole document names where it is

    def line(self, path: AttrPath) -> int | None:
        """The line of `path`, or of its nearest ancestor that has one (a missing key's parent)."""
        for end in range(len(path), 0, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return None

    def problem(self, path: AttrPath, message: str, value: object = None, hint: str | None = None) -> Problem:
        return Problem(self.file, format_path(path) or self.top, message, value, self.line(path), hint)


class Problems:
    """Collects the problems of one stage; `raise_if_any` ends the stage."""

    def __init__(self, source: LabSource):
        self.source = source
        self.items: list[Problem] = []

    def add(self, path: AttrPath, message: str, value: object = None, hint: str | None = None) -> None:
        self.items.append(self.source.problem(path, message, value, hint))

    def raise_if_any(self) -> None:
        if self.items:
            # by line, then in the order found: reads top to bottom like the file
            ordered = sorted(self.items, key=lambda p: p.line or 0)
            unique: dict[str, Problem] = {}
            for problem in ordered:
                unique.setdefault(str(problem), problem)  # e.g. a name both too long and malformed
            raise LabFileError(list(unique.values()))


@dataclass(frozen=True)
class DocumentKind:
    """How errors name one kind of YAML input file (lab files, image recipes, ...)."""

    name: str  # "lab file"
    holds: str  # what its top-level mapping holds: "lab settings"
    where: str  # where examples are: "example labs are in labs/"
    example: str  # a file to start from: "labs/default.yaml"
    top: str = "(lab)"  # what a problem of the whole document is located at


LAB_FILE = DocumentKind("lab file", "lab settings", "example labs are in labs/", "labs/default.yaml")


def read_lab_file(path: str | Path) -> LabSource:
    """The load stage: the file must exist and be one YAML mapping without duplicate keys."""
    return read_yaml_source(path, LAB_FILE)


def read_yaml_source(path: str | Path, kind: DocumentKind) -> LabSource:
    """One YAML mapping and the line of every key; LabFileError naming the line otherwise."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LabFileError([Problem(file, "(file)", f"{kind.name} not found",
                                    hint=f"check the path; {kind.where}")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LabFileError([Problem(file, "(file)", f"cannot read the {kind.name}: {exc}")]) from None
    if too_deep := _first_line_too_deep(text):
        raise LabFileError([Problem(
            file, "(yaml)", f"nested more than {MAX_DEPTH} levels deep", line=too_deep,
            hint=f"a {kind.name} needs a few levels: check brackets and indentation",
        )])
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (control characters)
        line = text[: exc.position].count("\n") + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise LabFileError([Problem(
            file, "(yaml)", f"character U+{code:04X} is not allowed in YAML (not printable)", line=line,
            hint="remove it; text that needs it can spell it as an escape inside double quotes",
        )]) from None
    except RecursionError:  # nested deeper than the parser can follow, in block style
        raise LabFileError([Problem(file, "(yaml)", "nested too deeply to read",
                                    hint=f"a {kind.name} needs a few levels: check the indentation")]
                           ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = f"invalid YAML: {exc.problem}" + (f" ({exc.context})" if exc.context else "")
        line = mark.line + 1 if mark else None
        raise LabFileError(
            [Problem(file, "(yaml)", message, line=line, hint="check indentation, colons and quotes")]
        ) from None
    lines: dict[AttrPath, int] = {}
    source = LabSource(file, data, Path(path).parent, lines, kind.top)
    problems = Problems(source)
    if node is not None:
        _index_lines(node, (), lines, problems)
    if data is None:
        problems.add((), f"the {kind.name} is empty", hint=f"start from {kind.example}")
    elif not isinstance(data, dict):
        problems.add((), f"must be a mapping of {kind.holds}", type(data).__name__)
    problems.raise_if_any()
    return source


#: deeper than any lab file needs; YAML's parser recurses per level and gives up near 1000
MAX_DEPTH = 64


def _first_line_too_deep(text: str) -> int | None:
    """The line where flow brackets ([ and {) open more than MAX_DEPTH levels, if any; quoted
    text and comments are skipped."""
    depth, quote, line = 0, "", 1
    for index, char in enumerate(text):
        if char == "\n":
            line += 1
            if quote != '"':
                quote = ""  # a single-quoted or plain scalar does not span lines in flow context here
            continue
        if quote:
            if char == quote and not (quote == '"' and text[index - 1] == "\\"):
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or text[index - 1] in " \t"):
            quote = "#"  # a comment: to the end of the line
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return line
        elif char in "]}":
            depth = max(0, depth - 1)
    return _first_line_indented_too_deep(text)


def _first_line_indented_too_deep(text: str) -> int | None:
    """The line where block style (indentation) opens more than MAX_DEPTH levels, if any."""
    indents: list[int] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.lstrip(" ")
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(raw) - len(stripped)
        while indents and indents[-1] >= indent:
            indents.pop()
        indents.append(indent)
        if len(indents) > MAX_DEPTH:
            return number
    return None


def source_from_dict(data: Mapping[str, Any], source: str = "<python>") -> LabSource:
    """The load stage of a lab written in Python: no file, no lines."""
    if not isinstance(data, Mapping):
        raise LabFileError(
            [Problem(source, "(lab)", "must be a mapping of lab settings", type(data).__name__)]
        )
    return LabSource(source, dict(data), Path.cwd(), {})


def _index_lines(node: yaml.Node, path: AttrPath, lines: dict[AttrPath, int], problems: Problems) -> None:
    """Record the line of each key and list item; report keys given twice (YAML keeps the last)."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            sub = (*path, key)
            line = key_node.start_mark.line + 1
            if sub in lines:
                problems.items.append(
                    Problem(
                        problems.source.file,
                        format_path(sub),
                        f"key given twice (first on line {lines[sub]})",
                        line=line,
                        hint="YAML keeps only the last one; remove or merge the duplicate",
                    )
                )
            else:
                lines[sub] = line
            _index_lines(value_node, sub, lines, problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            sub = (*path, index)
            lines[sub] = item.start_mark.line + 1
            _index_lines(item, sub, lines, problems)


# ---------------------------------------------------------------- schema
