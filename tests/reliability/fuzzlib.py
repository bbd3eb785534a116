"""Front-end fuzzing shared by `tests/reliability/test_fuzz.py` (hypothesis, in CI) and `bench/fuzz.py` (long runs).

Two generators, both driven by a *tape* — a list of small integers that every random choice reads in turn (0
once the tape runs out, which always takes the cheapest option). Hypothesis draws the tape, so its shrinker
turns a failure into a small spec; `bench/fuzz.py` draws it from a seeded `random.Random`.

- `grammar_case(tape)`: a random derivation of the rules of `netdsl/grammar.lark` (read from the parser Lark
  builds, so the fuzzer follows the grammar as it changes), with small depth and few tokens. Derivations are
  well-formed by construction; a whole file, statements inside a network skeleton, an expression, a block and
  its use, or a recipe. Then up to three random token edits (delete, duplicate, swap, replace, insert), which
  make most of them ill-formed.
- `zoo_case(tape)`: one of the specs in `specs/` with up to three token or character edits (delete,
  duplicate, swap, replace with another token).

`check_outcome(text)` is the oracle: loading gives a checked `Net` (its IR verifies, its summary prints) or a
`SpecError` whose first diagnostic is positioned (a span, or a file-level message that names the file), never
any other exception (an `InternalError` is a bug in netdsl), in under 2 s of CPU time.
"""

from __future__ import annotations

import contextlib
import re
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import netdsl
from netdsl.diagnostics import SpecError
from netdsl.ir import verify

REPO = Path(__file__).resolve().parents[2]
ZOO = sorted((REPO / "specs").glob("*.net"))
NAME = "fuzz.net"
LIMIT_S = 2.0  # CPU seconds per case
HANG_S = 20.0  # wall seconds: a case still running then is a hang (an alarm interrupts it)
# network parameters a zoo spec cannot do without (`auto` ones take their value from a dataset)
ZOO_PARAMS = {"gpt_char": {"vocab": 65}}


class Tape:
    """A choice sequence: `choice(n)` reads the next number modulo n; 0 (the cheapest) once it runs out."""

    def __init__(self, values: Sequence[int]) -> None:
        self.values = values
        self.i = 0

    def choice(self, n: int) -> int:
        if n <= 1 or self.i >= len(self.values):
            if self.i < len(self.values) and n == 1:
                self.i += 1
            return 0
        v = self.values[self.i]
        self.i += 1
        return v % n

    def pick(self, items: Sequence[Any]) -> Any:
        return items[self.choice(len(items))]


# ============================================================================ vocabulary


def _vocabulary() -> dict[str, list[str]]:
    """Words for NAME terminals by the rule that holds them, so that derivations often mean something."""
    from netdsl.ops import OPS
    from netdsl.recipe import AUGMENTS, DATASETS, KEYS, OPTIMIZERS, SCHEDULES

    ops = sorted(OPS)
    attrs = sorted({a.name for d in OPS.values() for a in d.attrs})
    values = ["x", "x", "x", "y", "h", "c", "z", "xs", "image", "label", "ids", "w", "n", "k", "final", "same",
              "auto", "true", "false"]
    blocks = ["B", "B", "RNN", "LSTM", "GRU", "rnn", "lstm", "gru"]
    calls = sorted(DATASETS) + sorted(OPTIMIZERS) + sorted(SCHEDULES) + sorted(AUGMENTS)
    odd = ["as", "_", "x1", "__init__", "__class__", "shape", "rank", "Net"]
    return {
        "NAME": values + ops + blocks + odd,  # anywhere else
        "atom": values * 3 + ops + blocks + calls + ["w", "c"],  # an expression's operand or a call's function
        "latom": ops * 2 + blocks + values[:3],  # right of ->
        "kwarg": attrs + ["c", "hidden", "w", "lr", "momentum", "size", "path", "seq", "every"],
        "attr": ["shape", "shape", "rank", "weight", "x"],
        "entry": sorted(KEYS) * 2 + ["optimiser", "x"],
        "catom": ["w", "n", "k", "c", "x"],
        "assign": ["y", "y", "z", "h", "x", "a", "b", "logits"],
        "let": ["proj", "emb", "f", "y"],
        "output": ["y", "z", "x", "logits"],
        "input_": ["x", "label", "mask", "t"],
        "input_decl": ["x", "h", "c", "xs"],
        "param": ["c", "w", "hidden", "n", "stride"],
        "as_names": ["image", "label", "x", "_", "y"],
        "CALLS": calls,
        "LABEL": ["c1", "f", "proj", "enc", "dec", "layer", "i3a.b1", "layer.0", "x", "out", "att.q", "stem.conv"],
        "NUMBER": ["0", "1", "1", "2", "2", "3", "4", "4", "8", "16", "5", "0.5", "1e-3", "0.1", "1000000000000",
                   "1000000000", "100000", "1e400", "7", "32", "64"],
        "STRING": ['"s"', '""', '"data.npz"', '"../../etc/passwd"', '"/etc/passwd"', '"x.net"', '"\\n"',
                   '"é"', '"mean"'],
    }


# Choosing an expansion: each has weight 4, and the cheapest one 4 more per expansion and per unit of bias (1
# when not listed): operators stay rare, so that expressions are mostly names, calls and layer chains.
# _WEIGHT overrides the weight of the expansions of a rule that contain a given symbol.
_WEIGHT = {("atom", "NUMBER"): 24, ("chain", "COLON"): 1, ("head", "LABEL"): 1, ("expr", "_IF"): 1,
           ("expr", "LABEL"): 1, ("postfix", "LSQB"): 1, ("postfix", "DOT"): 2, ("atom", "STRING"): 2,
           ("lpostfix", "latom"): 48, ("lpostfix", "LPAR"): 4, ("lpostfix", "_args"): 16, ("lpostfix", "DOT"): 1,
           ("lpostfix", "LSQB"): 1, ("_arg", "kwarg"): 8}
_BIAS = {"expr": 4, "or_expr": 8, "and_expr": 8, "not_expr": 8, "comparison": 8, "sum": 4, "product": 4,
         "unary": 8, "head": 3, "postfix": 2, "chain": 0, "layer": 2, "layer_body": 3, "lpostfix": 1,
         "count": 4, "cprod": 4, "cunary": 8, "cpost": 4}

_NEWLINES = ["\n", "\n", "\n", ";", "\n\n", "\n    # note\n"]


@dataclass
class _Expansion:
    symbols: tuple[tuple[bool, str], ...]  # (is_terminal, name)
    cost: float


class Grammar:
    """The grammar's rules as Lark compiled them (BNF: `?`, `*`, `+` already expanded into helper rules)."""

    def __init__(self) -> None:
        from netdsl.parser import get_parser

        parser = get_parser()
        rules: dict[str, list[tuple[tuple[bool, str], ...]]] = defaultdict(list)
        for r in parser.rules:
            rules[r.origin.name].append(tuple((s.is_term, s.name) for s in r.expansion))
        cost: dict[str, float] = {nt: float("inf") for nt in rules}
        changed = True
        while changed:  # the fewest terminals each rule can derive (a fixpoint)
            changed = False
            for nt, exps in rules.items():
                best = min(sum(1 if t else cost[s] for t, s in e) for e in exps)
                if best < cost[nt]:
                    cost[nt], changed = best, True
        self.rules = {nt: sorted((_Expansion(e, sum(1 if t else cost[s] for t, s in e)) for e in exps),
                                 key=lambda x: x.cost) for nt, exps in rules.items()}
        self.weights: dict[str, list[int]] = {}
        for nt, exps in self.rules.items():
            ws = [4] * len(exps)
            ws[0] += 4 * len(exps) * _BIAS.get(nt, 1)
            for i, e in enumerate(exps):
                for _, s in e.symbols:
                    ws[i] = _WEIGHT.get((nt, s), ws[i])
            self.weights[nt] = ws
        self.literals: dict[str, str] = {}
        for t in parser.terminals:
            pat = t.pattern.value
            if t.pattern.type == "str":
                self.literals[t.name] = pat
            elif re.fullmatch(r"(?:\\.|[^\\\[\](){}?*+|^$.])+(?:\\b)?", pat):  # a keyword or an escaped literal
                self.literals[t.name] = re.sub(r"\\(.)", r"\1", pat.removesuffix("\\b"))
        self.vocab = _vocabulary()

    def terminal(self, name: str, rule: str, prev: str | None, tape: Tape, names: Sequence[str] | None) -> str:
        if name == "NAME":
            if names is not None and rule in ("atom", "catom") and tape.choice(4):
                return tape.pick(names)  # a name the case declares
            return tape.pick(self.vocab["attr" if prev == "." else rule if rule in self.vocab else "NAME"])
        if name in self.vocab:
            return tape.pick(self.vocab[name])
        if name == "_NL":
            return tape.pick(_NEWLINES)
        if name in self.literals:
            return self.literals[name]
        return tape.pick(self.vocab["NAME"])  # a terminal this fuzzer does not know yet: a name

    def derive(self, start: str, tape: Tape, depth: int = 7, tokens: int = 60,
               names: Sequence[str] | None = None) -> list[str]:
        """Tokens of a random derivation of `start`: at most `depth` nested branching choices and about
        `tokens` terminals; beyond either, every rule takes its cheapest expansion (which always ends).
        `names`: the names in scope, which operands mostly take."""
        out: list[str] = []
        stack: list[tuple[bool, str, int, str]] = [(False, start, 0, start)]
        while stack:
            is_term, sym, d, rule = stack.pop()
            if is_term:
                out.append(self.terminal(sym, rule, out[-1] if out else None, tape, names))
                continue
            exps = self.rules[sym]
            if d >= depth or len(out) + len(stack) >= tokens:
                e = exps[0]
            else:  # the cheapest expansion often: derivations stay small and many of them mean something
                ws = self.weights[sym]
                k = tape.choice(sum(ws))
                i = 0
                while k >= ws[i]:
                    k -= ws[i]
                    i += 1
                e = exps[i]
            nd = d + 1 if len(e.symbols) > 1 else d  # only branching rules count as depth
            stack.extend((t, s, nd, sym) for t, s in reversed(e.symbols))
        return out


@cache
def grammar() -> Grammar:
    return Grammar()


# ============================================================================ grammar cases

_INPUTS = [("input x: [4]", "x"), ("input x: [8]", "x"), ("input image: [1, 8, 8]", "image"),
           ("input image: [3, 16, 16]", "image"), ("input xs: [6, 4]", "xs"), ("input ids: int[6]", "ids")]
_SECOND = [("", None), ("", None), ("", None), ("input label: int[]", "label"), ("input label: int[6]", "label"),
           ("input y: [4]", "t"), ("input t: [1]", "t")]


def _join(tokens: list[str]) -> str:
    out: list[str] = []
    for t in tokens:
        if t.startswith("\n") or t == ";":
            out.append(t + ("    " if t.startswith("\n") else " "))
        else:
            out.append(t + " ")
    return "".join(out)


def _statements(g: Grammar, tape: Tape, n: int, names: list[str]) -> str:
    """n statements; an assignment's value is derived from the grammar, the other kinds now and then."""
    lines = []
    for i in range(n):
        if tape.choice(3):
            target = "y" if i == n - 1 else tape.pick(["y", "z", "h"])
            lines.append(f"    {target} = {_join(g.derive('expr', tape, depth=5, tokens=24, names=names))}\n")
            names = names + [target]
        else:
            lines.append("    " + _join(g.derive("_stmt", tape, depth=5, tokens=24, names=names)) + "\n")
    return "".join(lines)


def _template(g: Grammar, tape: Tape) -> list[str]:
    """Tokens of one case: a whole file, or grammar-derived parts placed in a skeleton that declares names."""
    mode = tape.choice(6)
    if mode == 0:  # a whole file from the start symbol
        return g.derive("start", tape, depth=8, tokens=70)
    (first, x), (second, label) = tape.pick(_INPUTS), tape.pick(_SECOND)
    head = f"    {first}\n" + (f"    {second}\n" if second else "")
    names = [x] + ([label] if label else [])
    use_label = f"    loss cross_entropy(y, {label})\n" if label == "label" and tape.choice(2) else ""
    if mode == 1:  # statements in a network
        text = f"network N(w=4) {{\n{head}{_statements(g, tape, 1 + tape.choice(3), names + ['w'])}" \
               f"    output y\n{use_label}}}\n"
    elif mode == 2:  # a layer chain, the commonest shape of a spec
        sizes = ["1", "2", "3", "4", "4", "8", "16", x]
        layers = " -> ".join(_join(g.derive("layer", tape, depth=4, tokens=10, names=sizes))
                             for _ in range(1 + tape.choice(4)))
        text = f"network N {{\n{head}    y = {x} -> {layers}\n    output y\n{use_label}}}\n"
    elif mode == 3:  # a block (or a cell) from the grammar, used by a network
        kind = tape.pick(["block", "block", "cell"])
        sig, inner = tape.pick([("(c)(x)", ["x", "c"]), ("(c)(x, h: [c])", ["x", "h", "c"]),
                                ("(c=4)(x: [C])", ["x", "c", "C"]), ("()(x)", ["x"])])
        body = _statements(g, tape, 1 + tape.choice(2), inner)
        ret = tape.pick(["return y", "return y", "return y, y", "return y, (y, y)",
                         _join(g.derive("return_", tape, depth=4, tokens=12, names=inner + ["y"]))])
        use = tape.pick([f"{x} -> B(4)", f"B(4)({x})", f"unroll B(4) over {x}", f"{x} -> repeat 2 B(4)",
                         f"{x} -> b: B(c=4)", f"{x} -> B"])
        text = f"{kind} B{sig} {{\n{body}    {ret}\n}}\nnetwork N {{\n{head}    y = {use}\n    output y\n}}\n"
    elif mode == 4:  # one expression, bound and output
        e = _join(g.derive("expr", tape, depth=6, tokens=30, names=names))
        text = f"network N {{\n{head}    y = {e}\n    output y\n{use_label}}}\n"
    else:  # a recipe for a small network
        calls = g.vocab["CALLS"]
        entries = "".join(f"    {tape.pick(sorted(g.vocab['entry']))} "
                          f"{_join(g.derive('expr', tape, depth=3, tokens=10, names=calls))}\n"
                          if tape.choice(3) else
                          "    " + _join(g.derive("entry", tape, depth=4, tokens=14, names=calls)) + "\n"
                          for _ in range(1 + tape.choice(4)))
        text = ("network N(classes=3) {\n    input x: [4]\n    input label: int[]\n"
                "    logits = x -> dense(classes)\n    output logits\n    loss cross_entropy(logits, label)\n}\n"
                f"train N {{\n{entries}}}\n")
    return tokenize(text)


_EDITS = ("delete", "duplicate", "swap", "swap_next", "replace", "insert")
_INSERTS = ["(", ")", "[", "]", "{", "}", ",", ":", "=", "->", "\n", "-", "*", "/", ".", '"', "#", "\t", "\r",
            "\x0c", "\u2028", "é", "\x00", "0", "1e999", "repeat", "unroll", "over", "if", "then", "else", "int"]


def _token_edits(tape: Tape, toks: list[str], pool: list[str], count: int) -> list[str]:
    toks = list(toks)
    for _ in range(count):
        if not toks:
            break
        kind = tape.pick(_EDITS)
        i, j = tape.choice(len(toks)), tape.choice(len(toks))
        if kind == "delete":
            del toks[i]
        elif kind == "duplicate":
            toks.insert(i, toks[i])
        elif kind == "swap":
            toks[i], toks[j] = toks[j], toks[i]
        elif kind == "swap_next" and i + 1 < len(toks):
            toks[i], toks[i + 1] = toks[i + 1], toks[i]
        elif kind == "replace":
            toks[i] = tape.pick(pool)
        elif kind == "insert":
            toks.insert(i, " " + tape.pick(pool) + " ")
    return toks


def grammar_case(values: Sequence[int]) -> str:
    """A spec derived from the grammar, then (usually) damaged by a few token edits."""
    tape = Tape(values)
    g = grammar()
    edits = tape.pick([0, 0, 1, 1, 2, 3])
    toks = _template(g, tape)
    pool = _INSERTS + g.vocab["NAME"][::3] + g.vocab["NUMBER"] + list(g.literals.values())
    return "".join(_token_edits(tape, toks, pool, edits))


# ============================================================================ zoo mutations

_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|->|==|!=|<=|>=|'
                    r"#[^\n]*|\n|[ \t]+|.", re.DOTALL)


def tokenize(text: str) -> list[str]:
    toks = _TOKEN.findall(text)
    assert "".join(toks) == text
    return toks


@cache
def _zoo() -> list[tuple[str, str, list[str]]]:
    """(stem, text, tokens) of each spec in specs/."""
    out = []
    for p in ZOO:
        text = p.read_text(encoding="utf-8")
        out.append((p.stem, text, tokenize(text)))
    return out


def zoo_case(values: Sequence[int]) -> tuple[str, str]:
    """(stem, text): a zoo spec with one to three token or character edits."""
    tape = Tape(values)
    zoo = _zoo()
    stem, _, toks = zoo[tape.choice(len(zoo))]
    # edit the code, not the header comments: positions are drawn among the non-comment, non-space tokens
    code = [i for i, t in enumerate(toks) if not t.isspace() and not t.startswith("#")]
    pool = _INSERTS + grammar().vocab["NAME"][::2] + grammar().vocab["NUMBER"] + [toks[i] for i in code[::7]]
    toks = list(toks)
    for _ in range(1 + tape.choice(3)):
        if not code:
            break
        kind = tape.pick(_EDITS + ("char_delete", "char_duplicate", "char_swap_next"))
        a, b = tape.choice(len(code)), tape.choice(len(code))
        i, j = code[a], code[b]
        if kind == "delete":
            toks[i] = ""
        elif kind == "duplicate":
            toks[i] = toks[i] + " " + toks[i]
        elif kind == "swap":
            toks[i], toks[j] = toks[j], toks[i]
        elif kind == "swap_next":
            k = code[min(a + 1, len(code) - 1)]  # the next token of code
            toks[i], toks[k] = toks[k], toks[i]
        elif kind == "replace":
            toks[i] = tape.pick(pool)
        elif kind == "insert":
            toks[i] = " " + tape.pick(pool) + " " + toks[i]
        else:
            t = toks[i]
            if t:
                c = tape.choice(len(t))
                if kind == "char_delete":
                    toks[i] = t[:c] + t[c + 1 :]
                elif kind == "char_duplicate":
                    toks[i] = t[:c] + t[c] + t[c:]
                elif c + 1 < len(t):
                    toks[i] = t[:c] + t[c + 1] + t[c] + t[c + 2 :]
    return stem, "".join(toks)


# ============================================================================ the oracle


class Hang(Exception):
    """A case ran past HANG_S wall seconds."""


@contextlib.contextmanager
def hang_guard(seconds: float = HANG_S) -> Iterator[None]:
    """Interrupt a case that hangs (SIGALRM; main thread on POSIX only, else no guard)."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def fire(signum: int, frame: Any) -> None:
        raise Hang(f"still running after {seconds:g} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def check_outcome(text: str, name: str = NAME, params: dict[str, Any] | None = None, memory: bool = True) -> str:
    """Load `text`: "ok" (a checked Net whose IR verifies and whose summary prints) or "error" (a positioned
    SpecError). Anything else raises: another exception, an unpositioned diagnostic, or more than LIMIT_S."""
    t0 = time.process_time()  # CPU time: other work on the machine does not count
    with hang_guard():
        try:
            net = netdsl.loads(text, name, **(params or {}))
        except SpecError as err:
            assert err.diagnostics, "a SpecError without diagnostics"
            d = err.diagnostics[0]
            assert d.span is not None or d.message.startswith(name), f"unpositioned diagnostic: {d.message}"
            rendered = str(err)
            if d.span is not None:
                assert rendered.startswith(f"{d.span.file}:{d.span.line}:{d.span.col}: error: "), rendered
                assert d.span.line >= 1 and d.span.col >= 1, rendered
                if d.span.file == name:  # the quoted line is the one the position names, as written
                    lines = text.split("\n")
                    quoted = lines[d.span.line - 1].removesuffix("\r") if d.span.line <= len(lines) else ""
                    if quoted:
                        assert rendered.split("\n")[1] == quoted.expandtabs(4), rendered
            outcome = "error"
        else:
            verify(net.ir)
            net.ir.pretty()
            s = net.summary(memory=memory)
            s.to_json()
            str(s)
            assert s.totals["params"] >= 0
            outcome = "ok"
    elapsed = time.process_time() - t0
    assert elapsed < LIMIT_S, f"took {elapsed:.2f} s of CPU time"
    return outcome


def warm() -> None:
    """Build the grammar, the prelude and the generators once: a cold cache is not a case's cost."""
    netdsl.loads("network W {\n    input x: [1]\n    output y = x\n}\n")
    grammar()
    _zoo()
