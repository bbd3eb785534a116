"""Parse .net text into the positioned AST of `netdsl.ast`.

`parse(text, name)` runs Lark's LALR parser (contextual lexer) over `grammar.lark` and turns the tree into AST
nodes without recursion, so deeply nested input cannot overflow the stack. Every syntax error becomes a
`SpecError` at the offending token, saying in plain words what was expected and what was found.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import threading

from lark import Lark, Token, Tree
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedInput, UnexpectedToken
from lark.lark import PostLex

from . import ast
from .diagnostics import Source, Span, SpecError, error

__all__ = ["RESERVED_WORDS", "get_parser", "parse"]

RESERVED_WORDS = frozenset((
    "import", "block", "cell", "network", "train", "input", "output", "loss", "let", "return", "if", "then",
    "else", "and", "or", "not", "repeat", "unroll", "over", "from", "reverse", "int",
))  # fmt: skip

_GRAMMAR_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "grammar.lark")


# ---------------------------------------------------------------------------------------------- the parser


class _BracketPostLex(PostLex):
    """Drops newlines while a `(` or `[` is open (not `{`). Tokens pass through one by one, never held back."""

    # _NL must be lexable everywhere (it is dropped inside brackets, where the parser does not accept it);
    # the multi-character operators are lexed whole everywhere so that `->` is never read as `-` `>`.
    always_accept = ("_NL", "ARROW", "EQEQ", "NE", "LE", "GE")

    def process(self, stream):
        depth = 0
        for tok in stream:
            kind = tok.type
            if kind == "_NL":
                if depth:
                    continue
            elif kind == "LPAR" or kind == "LSQB":
                depth += 1
            elif (kind == "RPAR" or kind == "RSQB") and depth:
                depth -= 1
            yield tok


_parser: Lark | None = None
_parser_lock = threading.Lock()


def _cache_path(grammar: str) -> str | None:
    """A writable cache file for the analysed grammar, or None (then no cache is used)."""
    try:
        import lark

        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        folder = os.path.join(base, "netdsl")
        os.makedirs(folder, exist_ok=True)
        if not os.access(folder, os.W_OK):
            return None
        digest = hashlib.sha256(grammar.encode("utf-8")).hexdigest()[:16]
        tag = f"lark{lark.__version__}-py{sys.version_info[0]}{sys.version_info[1]}"
        return os.path.join(folder, f"grammar-{digest}-{tag}.cache")
    except (OSError, ValueError, KeyError):  # no home, read-only file system, ...: parse without a cache
        return None


def get_parser() -> Lark:
    """The process-wide Lark parser (built on first use, from Lark's grammar cache when possible)."""
    global _parser
    if _parser is None:
        with _parser_lock:
            if _parser is None:
                with open(_GRAMMAR_PATH, encoding="utf-8") as f:
                    grammar = f.read()
                options = {
                    "parser": "lalr",
                    "lexer": "contextual",
                    "postlex": _BracketPostLex(),
                    "propagate_positions": True,
                    "maybe_placeholders": False,
                }
                cache = _cache_path(grammar)
                built = None
                if cache:
                    try:
                        built = Lark(grammar, cache=cache, **options)
                    except Exception:  # noqa: BLE001 - a broken or unwritable cache: build without it
                        built = None
                _parser = built or Lark(grammar, **options)
    return _parser


def parse(text: str, name: str = "<string>") -> ast.Module:
    """Parse one .net file. Raises `SpecError` (and nothing else) on a syntax error."""
    source = Source(name, text)
    parser = get_parser()
    try:
        tree = parser.parse(text)
    except UnexpectedInput as e:
        raise _syntax_error(e, source) from None
    except LarkError as e:  # not expected from an LALR parse; still never leak a Lark exception
        raise error(_eof_span(source), f"syntax error: {e}") from None
    except RecursionError:
        raise error(_eof_span(source), "syntax error: expression nested too deeply") from None
    try:
        return _Builder(source).build(tree)
    except RecursionError:
        raise error(_eof_span(source), "syntax error: expression nested too deeply") from None


# ---------------------------------------------------------------------------------------------- tree -> AST


class _Wrapped:
    """An intermediate value that is not an AST node (results, body, `from`, `as` names)."""

    __slots__ = ("kind", "value")

    def __init__(self, kind: str, value):
        self.kind = kind
        self.value = value


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
_ESCAPE_RE = re.compile(r"\\(.)")


def _unescape(body: str) -> str:
    if "\\" not in body:
        return body
    return _ESCAPE_RE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(0)), body)


class _Builder:
    """Turns the Lark tree into AST nodes bottom-up with an explicit stack (no recursion)."""

    def __init__(self, source: Source):
        self.src = source

    def build(self, tree: Tree) -> ast.Module:
        order: list[Tree] = []
        stack = [tree]
        while stack:
            node = stack.pop()
            order.append(node)
            stack.extend(c for c in node.children if isinstance(c, Tree))
        values: dict[int, object] = {}
        for node in reversed(order):  # every node after all of its descendants
            kids = [values.pop(id(c)) if isinstance(c, Tree) else c for c in node.children]
            values[id(node)] = getattr(self, "_" + node.data)(node.meta, kids)
        return values[id(tree)]

    # -- helpers
    def span(self, meta) -> Span:
        return Span(self.src, meta.line, meta.column, meta.end_line, meta.end_column)

    def tspan(self, tok: Token) -> Span:
        return Span(self.src, tok.line, tok.column, tok.end_line, tok.end_column)

    def expr(self, x) -> ast.Expr:
        if not isinstance(x, Token):
            return x
        kind = x.type
        if kind == "NAME":
            if x == "true" or x == "false":
                return ast.Bool(self.tspan(x), x == "true")
            return ast.Name(self.tspan(x), str(x))
        if kind == "NUMBER":
            text = str(x)
            try:
                value = float(text) if ("." in text or "e" in text or "E" in text) else int(text)
            except ValueError:  # more digits than Python converts
                raise error(self.tspan(x), f"the number {text[:12]}… ({len(text)} digits) is too large") from None
            return ast.Num(self.tspan(x), value)
        if kind == "STRING":
            return ast.Str(self.tspan(x), _unescape(x[1:-1]))
        raise error(
            self.tspan(x), f"syntax error: unexpected {x!s}"
        )  # pragma: no cover - grammar prevents it

    # -- top level
    def _start(self, meta, kids):
        module = ast.Module([], [], [], [], self.src.name)
        for item in kids:
            if isinstance(item, ast.Import):
                module.imports.append(item)
            elif isinstance(item, ast.Block):
                module.blocks.append(item)
            elif isinstance(item, ast.Network):
                module.networks.append(item)
            else:
                module.trains.append(item)
        return module

    def _import_(self, meta, kids):
        return ast.Import(_unescape(kids[0][1:-1]), self.span(meta))

    def _header(self, meta, name: Token) -> Span:
        return Span(self.src, meta.line, meta.column, name.end_line, name.end_column)

    def _block(self, meta, kids, is_cell=False):
        name = kids[0]
        params = [k for k in kids if isinstance(k, ast.Param)]
        inputs = [k for k in kids if isinstance(k, ast.InputDecl)]
        results = next((k.value for k in kids if isinstance(k, _Wrapped) and k.kind == "results"), None)
        body = kids[-1].value
        return ast.Block(str(name), params, inputs, results, body, self._header(meta, name), is_cell)

    def _cell(self, meta, kids):
        return self._block(meta, kids, is_cell=True)

    def _results(self, meta, kids):
        return _Wrapped("results", kids)

    def _param(self, meta, kids):
        default = self.expr(kids[1]) if len(kids) > 1 else None
        return ast.Param(str(kids[0]), default, self.span(meta))

    def _input_decl(self, meta, kids):
        return ast.InputDecl(str(kids[0]), kids[1] if len(kids) > 1 else None, self.span(meta))

    def _network(self, meta, kids):
        name = kids[0]
        params = [k for k in kids if isinstance(k, ast.Param)]
        return ast.Network(str(name), params, kids[-1].value, self._header(meta, name))

    def _train(self, meta, kids):
        return ast.Train(str(kids[0]), kids[1:], self._header(meta, kids[0]))

    def _entry(self, meta, kids):
        names: list[str] = []
        if isinstance(kids[-1], _Wrapped):
            names = kids.pop().value
        return ast.TrainEntry(str(kids[0]), [self.expr(k) for k in kids[1:]], names, self.span(meta))

    def _as_names(self, meta, kids):
        return _Wrapped("as", [str(k) for k in kids])

    def _body(self, meta, kids):
        return _Wrapped("body", kids)

    # -- statements
    def _assign(self, meta, kids):
        targets = kids[:-1]
        return ast.Assign(
            self.span(meta), [str(t) for t in targets], [self.tspan(t) for t in targets], self.expr(kids[-1])
        )

    def _let(self, meta, kids):
        return ast.Let(self.span(meta), str(kids[0]), self.expr(kids[1]))

    def _return_(self, meta, kids):
        return ast.Return(self.span(meta), [self.expr(k) for k in kids])

    def _input_(self, meta, kids):
        return ast.InputStmt(self.span(meta), str(kids[0]), kids[1])

    def _output(self, meta, kids):
        return ast.OutputStmt(self.span(meta), str(kids[0]), self.expr(kids[1]) if len(kids) > 1 else None)

    def _loss(self, meta, kids):
        return ast.LossStmt(self.span(meta), self.expr(kids[0]))

    def _expr_stmt(self, meta, kids):
        return ast.ExprStmt(self.span(meta), self.expr(kids[0]))

    # -- expressions
    def _if_expr(self, meta, kids):
        cond, then, orelse = (self.expr(k) for k in kids)
        return ast.IfExpr(self.span(meta), cond, then, orelse)

    def _unroll(self, meta, kids):
        start = next((k.value for k in kids if isinstance(k, _Wrapped)), None)
        reverse = isinstance(kids[-1], Token) and kids[-1].type == "REVERSE"
        return ast.Unroll(self.span(meta), self.expr(kids[0]), self.expr(kids[1]), start, reverse)

    def _from_(self, meta, kids):
        return _Wrapped("from", self.expr(kids[0]))

    def _labeled(self, meta, kids):
        label = kids[0]
        return ast.Labeled(self.span(meta), str(label), self.tspan(label), self.expr(kids[1]))

    def _or_(self, meta, kids):
        return ast.BoolOp(self.span(meta), "or", self.expr(kids[0]), self.expr(kids[1]))

    def _and_(self, meta, kids):
        return ast.BoolOp(self.span(meta), "and", self.expr(kids[0]), self.expr(kids[1]))

    def _not_(self, meta, kids):
        return ast.Not(self.span(meta), self.expr(kids[0]))

    def _compare(self, meta, kids):
        return ast.Compare(self.span(meta), str(kids[1]), self.expr(kids[0]), self.expr(kids[2]))

    def _binop(self, meta, kids):
        return ast.BinOp(self.span(meta), str(kids[1]), self.expr(kids[0]), self.expr(kids[2]))

    def _neg(self, meta, kids):
        return ast.UnaryOp(self.span(meta), "-", self.expr(kids[1]))

    def _chain(self, meta, kids):
        return ast.Chain(self.span(meta), self.expr(kids[0]), self.expr(kids[1]))

    def _assert_(self, meta, kids):
        return ast.Assert(self.span(meta), self.expr(kids[0]), kids[1])

    def _repeat(self, meta, kids):
        return ast.Repeat(self.span(meta), self.expr(kids[0]), self.expr(kids[1]))

    def _call(self, meta, kids):
        args: list[ast.Expr] = []
        kwargs: list[ast.Keyword] = []
        for k in kids[1:]:
            if isinstance(k, ast.Keyword):
                if any(kw.name == k.name for kw in kwargs):
                    raise error(k.span, f"syntax error: keyword argument '{k.name}' is given twice")
                kwargs.append(k)
            elif kwargs:
                arg = self.expr(k)
                raise error(arg.span, "syntax error: positional argument after keyword arguments")
            else:
                args.append(self.expr(k))
        return ast.Call(self.span(meta), self.expr(kids[0]), args, kwargs)

    def _kwarg(self, meta, kids):
        return ast.Keyword(str(kids[0]), self.expr(kids[1]), self.span(meta))

    def _attr(self, meta, kids):
        return ast.Attribute(self.span(meta), self.expr(kids[0]), str(kids[1]))

    def _index(self, meta, kids):
        return ast.Index(self.span(meta), self.expr(kids[0]), self.expr(kids[1]))

    def _paren(self, meta, kids):
        return self.expr(kids[0])

    def _tuple(self, meta, kids):
        return ast.TupleExpr(self.span(meta), [self.expr(k) for k in kids])

    def _list(self, meta, kids):
        return ast.ListExpr(self.span(meta), [self.expr(k) for k in kids])

    def _type(self, meta, kids):
        is_int = bool(kids) and isinstance(kids[0], Token) and kids[0].type == "INT"
        dims = kids[1:] if is_int else kids
        return ast.TypeExpr([self.expr(d) for d in dims], is_int, self.span(meta))


# ---------------------------------------------------------------------------------------------- syntax errors

_KEYWORDS = {f"_{w.upper()}": w for w in RESERVED_WORDS} | {"REVERSE": "reverse", "INT": "int", "_AS": "as"}
_PUNCT = {
    "LPAR": "(", "RPAR": ")", "LSQB": "[", "RSQB": "]", "LBRACE": "{", "RBRACE": "}", "COMMA": ",", "DOT": ".",
    "COLON": ":", "SEMI": ";", "EQUAL": "=", "ARROW": "->", "PLUS": "+", "MINUS": "-", "STAR": "*", "SLASH": "/",
    "EQEQ": "==", "NE": "!=", "LE": "<=", "GE": ">=", "LT": "<", "GT": ">",
}  # fmt: skip
_WORDS = {"NAME": "a name", "NUMBER": "a number", "STRING": "a string", "LABEL": "a label", "_NL": "end of line",
          "SEMI": "end of line", "$END": "end of file"}  # fmt: skip

_EXPR_START = {"NAME", "NUMBER", "STRING", "LPAR", "LSQB", "MINUS", "_NOT", "_IF", "_UNROLL", "LABEL"}
_STMT_START = {"_LET", "_RETURN", "_INPUT", "_OUTPUT", "_LOSS"}
_TOP_START = {"_IMPORT", "_BLOCK", "_CELL", "_NETWORK", "_TRAIN"}
_LAYER_START = {"NAME", "LPAR", "LABEL", "_REPEAT"}
_COUNT_START = {"NAME", "NUMBER", "LPAR", "MINUS"}
# what may continue an expression: left out of "expected ..." when the expression could also end there
_OPERATORS = {"PLUS", "MINUS", "STAR", "SLASH", "EQEQ", "NE", "LT", "LE", "GT", "GE", "_AND", "_OR", "ARROW",
              "COLON", "LPAR", "DOT", "LSQB"}  # fmt: skip
_COMPARISONS = {"EQEQ", "NE", "LT", "LE", "GT", "GE"}


def _describe_token_kind(kind: str) -> str:
    if kind in _KEYWORDS:
        return f"'{_KEYWORDS[kind]}'"
    if kind in _PUNCT:
        return f"'{_PUNCT[kind]}'"
    return _WORDS.get(kind, kind.lower())


def _describe_expected(kinds: set[str]) -> str:
    s = {k for k in kinds if k.isupper() and k not in ("WS", "COMMENT", "CONT")}
    parts: list[str] = []
    if _TOP_START <= s:
        parts.append("'import', 'block', 'cell', 'network' or 'train'")
        s -= _TOP_START | {"_NL", "SEMI", "$END"}
    after_value = bool(s & {"PLUS", "STAR", "_AND", "_OR"})  # a complete expression could end here
    if _STMT_START <= s:
        parts.append("a statement")
        s -= _STMT_START | _EXPR_START
    elif {"NAME", "STRING", "NUMBER"} <= s:
        parts.append("an expression")
        s -= _EXPR_START
    elif "_REPEAT" in s and "NAME" in s:
        parts.append("a layer")
        s -= _LAYER_START
    elif after_value and {"NAME", "LPAR"} <= s:  # after the count of a repeat
        parts.append("a layer")
        s -= {"NAME", "LPAR"}
    elif _COUNT_START <= s:
        parts.append("a number or a name")
        s -= _COUNT_START
    if after_value:  # name what may end the expression, not every operator that could continue it
        rest = s - _OPERATORS
        if "RPAR" in rest or "_NL" in rest:
            rest.discard("EQUAL")
        s = rest if (rest or parts) else {"an operator"}
    if "_NL" in s or "SEMI" in s:
        s -= {"_NL", "SEMI", "RBRACE", "$END"}
        parts.insert(0, "end of line")
    words = sorted((_describe_token_kind(k) if k != "an operator" else k for k in s), key=_sort_key)
    parts.extend(w for w in words if w not in parts)
    if not parts:
        return "something else"
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]


def _sort_key(word: str):
    return (0 if word.startswith("'") else 1, word)


def _found(tok: Token) -> str:
    kind = tok.type
    if kind in ("$END", "_NL"):
        return _WORDS[kind]
    if kind == "STRING":
        text = str(tok)
        return f"the string {text if len(text) <= 24 else text[:20] + '...'}"
    if kind == "NUMBER":
        return f"the number {tok}"
    if kind in ("NAME", "LABEL"):
        return f"the name '{tok}'"
    return f"'{tok}'"


def _eof_span(source: Source) -> Span:
    """Just after the last visible character of the text."""
    text = source.text.rstrip()
    line = text.count("\n") + 1
    col = len(text) - (text.rfind("\n") + 1) + 1
    return Span(source, line, col, line, col + 1)


_BRACKET_SCAN = re.compile(r'"(?:[^"\\\r\n]|\\.)*"?|#[^\r\n]*|[()\[\]{}]|\n')
_CLOSERS = {")": "(", "]": "[", "}": "{"}


def _unclosed(text: str) -> tuple[str, int, int] | None:
    """The innermost bracket still open at the end of the text: (char, line, col), or None."""
    stack: list[tuple[str, int, int]] = []
    line, line_start = 1, 0
    for m in _BRACKET_SCAN.finditer(text):
        ch = m.group()
        if ch == "\n":
            line, line_start = line + 1, m.end()
        elif ch in "([{":
            stack.append((ch, line, m.start() - line_start + 1))
        elif ch in _CLOSERS:
            while stack:  # close the matching bracket (and any unmatched ones inside it)
                if stack.pop()[0] == _CLOSERS[ch]:
                    break
    return stack[-1] if stack else None


def _expected_of(e: UnexpectedInput) -> set[str]:
    """The terminals the parser would really accept at the error (LALR tables merge lookaheads)."""
    interactive = getattr(e, "interactive_parser", None)
    try:
        if interactive is not None:
            return set(interactive.accepts())
        state = e.state  # pragma: no cover - Lark attaches an interactive parser to LALR errors
        return {k for k in state.parse_conf.parse_table.states[state.position] if k.isupper()}
    except Exception:  # noqa: BLE001  # pragma: no cover - the plain set of the error, larger but right
        return set(getattr(e, "expected", None) or getattr(e, "allowed", None) or ())


def _syntax_error(e: UnexpectedInput, source: Source) -> SpecError:
    if isinstance(e, UnexpectedCharacters):
        text = source.text
        ch = text[e.pos_in_stream] if e.pos_in_stream < len(text) else ""
        if ch == '"':
            width = max(1, len(source.line(e.line)) - e.column + 1)
            return error(
                Span(source, e.line, e.column, e.line, e.column + width), "syntax error: unterminated string"
            )
        shown = f"'{ch}'" if ch.isprintable() else repr(ch)
        return error(
            Span(source, e.line, e.column, e.line, e.column + 1),
            f"syntax error: unexpected character {shown}",
        )
    if not isinstance(e, UnexpectedToken):  # pragma: no cover - LALR raises only the two above
        return error(_eof_span(source), "syntax error")
    tok = e.token
    expected = _expected_of(e)
    kind = tok.type
    if kind == "$END":
        span = _eof_span(source)
        open_ = _unclosed(source.text)
        if open_ is not None and (open_[0] != "{" or "RBRACE" in expected):
            ch, line, col = open_
            at = Span(source, line, col, line, col + 1) if ch != "{" else span
            return error(
                at, f"syntax error: unexpected end of file: '{ch}' opened at {line}:{col} is never closed"
            )
    else:
        span = Span(source, tok.line, tok.column, tok.end_line, tok.end_column)
        if kind == "_NL":
            span = Span(source, tok.line, tok.column, tok.line, tok.column + 1)
    hint = None
    if kind == "_REPEAT" and "_REPEAT" not in expected and "NUMBER" in expected:  # in an expression
        return error(span, "syntax error: 'repeat' belongs in a chain, after '->'",
                     "write: y = x -> repeat N Layer(…)")
    if kind in _KEYWORDS and ({"NAME", "LABEL"} & expected):
        word = _KEYWORDS[kind]
        if not (kind in _TOP_START and _STMT_START <= expected):
            return error(span, f"syntax error: '{word}' is a reserved word and cannot be a name")
        hint = "is a '}' missing before it?"
    if kind in _COMPARISONS and (expected & {"PLUS", "_AND"}) and kind not in expected:
        hint = "comparisons do not chain: write a < b and b < c"
    if kind not in ("$END", "_NL") and hint is None and tok.start_pos is not None:
        open_ = _unclosed(source.text[: tok.start_pos])
        if open_ is not None and open_[0] != "{" and open_[1] < tok.line:
            hint = f"'{open_[0]}' opened at {open_[1]}:{open_[2]} is not closed"
    if kind == "_NL" and "LBRACE" in expected:
        hint = "a '{' opens on the header's own line"
    if kind == "LBRACE" and "LPAR" in expected and any(t.type in ("_BLOCK", "_CELL") for t in _history(e)):
        hint = "a block header has two groups, parameters then inputs: block Name(params)(inputs)"
    return error(span, f"syntax error: expected {_describe_expected(expected)}, found {_found(tok)}", hint)


def _history(e: UnexpectedInput) -> list[Token]:
    state = getattr(e, "state", None)
    values = getattr(state, "value_stack", None) or []
    return [v for v in values if isinstance(v, Token)]
