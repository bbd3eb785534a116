"""Source positions and user-facing diagnostics.

Every AST node, IR node and error carries a `Span`. A `SpecError` holds one or more `Diagnostic`s and its
`str()` is the rendered text the CLI prints: ``file:line:col: error: …``, the quoted line, carets, the chain of
block uses and a hint. Failures of netdsl itself are `InternalError`, never `SpecError`, so fuzzing finds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, eq=False)
class Source:
    """A spec text and the name it is reported under (a path, or `<string>`)."""

    name: str
    text: str

    def line(self, lineno: int) -> str:
        # lines end at "\n" only, as the parser counts them (splitlines would also split at \f, \x1c, \u2028 …)
        lines = self.text.split("\n")
        return lines[lineno - 1].removesuffix("\r") if 1 <= lineno <= len(lines) else ""


@dataclass(frozen=True)
class Span:
    """A region of a source: 1-based line and column, end exclusive (end_col may be on end_line)."""

    source: Source = field(compare=False, repr=False)
    line: int
    col: int
    end_line: int
    end_col: int

    @property
    def file(self) -> str:
        return self.source.name

    def __str__(self) -> str:
        return f"{self.source.name}:{self.line}:{self.col}"

    def to(self, other: Span) -> Span:
        """The span from the start of self to the end of other."""
        return Span(self.source, self.line, self.col, other.end_line, other.end_col)


@dataclass(frozen=True)
class UseSite:
    """One link of the chain of block uses that led to a node: `in block Basic, used at f:31:14 as layer3.1`."""

    block: str
    span: Span
    label: str


@dataclass
class Diagnostic:
    span: Span | None
    message: str
    hint: str | None = None
    notes: list[str] = field(default_factory=list)
    uses: tuple[UseSite, ...] = ()
    severity: str = "error"

    def render(self) -> str:
        out: list[str] = []
        where = f"{self.span}: " if self.span is not None else ""
        out.append(f"{where}{self.severity}: {one_line(self.message)}")
        if self.span is not None:
            out.extend(_quote(self.span))
        for use in reversed(self.uses):
            label = f" as {use.label}" if use.label else ""
            out.append(f"  in block {use.block}, used at {use.span}{label}")
            out.extend(_quote(use.span))
        out.extend(f"  note: {one_line(n)}" for n in self.notes)
        if self.hint:
            out.append(f"  hint: {one_line(self.hint)}")
        return "\n".join(out)


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def one_line(text: str) -> str:
    """A message as one line: control characters and line separators from the spec's strings are escaped, so a
    string value such as "a\\nb" quoted in a message cannot break the diagnostic's layout."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _ESCAPES.get(c, f"\\u{ord(c):04x}") for c in text)


def _quote(span: Span) -> list[str]:
    text = span.source.line(span.line)
    if not text:
        return []
    width = (span.end_col - span.col) if span.end_line == span.line else len(text) - span.col + 1
    width = max(1, min(width, len(text) - span.col + 1)) if span.col <= len(text) else 1
    # the line is quoted as written (its own indentation), carets under the culprit; tabs expanded alike
    prefix = text[: span.col - 1].expandtabs(4)
    return [text.expandtabs(4), " " * len(prefix) + "^" * width]


class SpecError(ValueError):
    """A problem in the user's spec, data or flags. `str()` is the full rendered diagnostic text."""

    def __init__(self, diagnostics: Diagnostic | list[Diagnostic]):
        self.diagnostics = [diagnostics] if isinstance(diagnostics, Diagnostic) else list(diagnostics)
        super().__init__("\n".join(d.render() for d in self.diagnostics))

    @property
    def span(self) -> Span | None:
        return self.diagnostics[0].span if self.diagnostics else None


class InternalError(Exception):
    """A bug in netdsl (not in the spec). Reported with the spec position it was working on."""

    def __init__(self, message: str, span: Span | None = None):
        self.span = span
        where = f" while processing {span}" if span is not None else ""
        super().__init__(f"internal error{where}: {message} (this is a bug in netdsl; please report it)")


def error(span: Span | None, message: str, hint: str | None = None, **kw) -> SpecError:
    """Shorthand: a SpecError with one diagnostic."""
    return SpecError(Diagnostic(span, message, hint, **kw))


class Collector:
    """Collects independent diagnostics so that all of them are reported, not just the first."""

    def __init__(self) -> None:
        self.diagnostics: list[Diagnostic] = []

    def add(self, err: SpecError | Diagnostic) -> None:
        if isinstance(err, SpecError):
            self.diagnostics.extend(err.diagnostics)
        else:
            self.diagnostics.append(err)

    def raise_if_any(self) -> None:
        if self.diagnostics:
            seen: set[str] = set()
            unique = []
            for d in self.diagnostics:
                key = d.render()
                if key not in seen:
                    seen.add(key)
                    unique.append(d)
            raise SpecError(unique)
