"""Fuzzing the front end (CI size): grammar derivations and zoo mutations load or fail with a positioned SpecError.

The generators and the oracle are in `fuzzlib.py` (shared with `bench/fuzz.py`, which runs 100,000 cases). Every
case is a tape of choices that hypothesis draws and shrinks; derandomized and without an example database, CI
runs the same 5,200 cases every time (3,000 from the grammar, 2,200 zoo mutations).
NETDSL_FUZZ_SCALE=10 runs ten times as many; NETDSL_FUZZ_RANDOM=1 draws new ones.
The minimal reproducers of the bugs the fuzzers found are the regression cases at the end of this file.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

import netdsl

from . import fuzzlib

SCALE = float(os.environ.get("NETDSL_FUZZ_SCALE", "1"))


def _settings(n: int) -> settings:
    return settings(max_examples=max(1, int(n * SCALE)), deadline=None, database=None,
                    derandomize=not os.environ.get("NETDSL_FUZZ_RANDOM"),
                    suppress_health_check=list(HealthCheck))


_tape = st.lists(st.integers(0, (1 << 16) - 1), max_size=200)


@pytest.fixture(autouse=True, scope="module")
def _warm() -> None:
    """The grammar, the prelude and the zoo are built once before any case is timed."""
    fuzzlib.warm()


def test_the_grammar_is_read_from_the_parser() -> None:
    g = fuzzlib.grammar()
    assert {"start", "network", "block", "cell", "train", "expr", "layer", "type"} <= set(g.rules)
    assert g.literals["_UNROLL"] == "unroll" and g.literals["ARROW"] == "->"
    # every rule can end (its cheapest derivation is finite), so a derivation always terminates
    assert all(e[0].cost < float("inf") for e in g.rules.values())


def test_cases_are_a_pure_function_of_the_tape() -> None:
    tape = list(range(0, 4000, 37))
    assert fuzzlib.grammar_case(tape) == fuzzlib.grammar_case(tape)
    assert fuzzlib.zoo_case(tape) == fuzzlib.zoo_case(tape)
    assert fuzzlib.grammar_case([]) == ""  # an empty tape: the cheapest file, an empty one
    stem, text = fuzzlib.zoo_case([])
    assert text != (fuzzlib.REPO / "specs" / f"{stem}.net").read_text(encoding="utf-8")


def test_unedited_derivations_parse() -> None:
    """Derivations of the grammar's rules are well-formed: without edits they all get past the parser."""
    import random

    from netdsl.parser import parse

    g = fuzzlib.grammar()
    rng = random.Random(0)
    parsed = 0
    for _ in range(300):
        tape = fuzzlib.Tape([rng.randrange(1 << 16) for _ in range(150)])
        text = fuzzlib._join(g.derive("start", tape, depth=8, tokens=70))
        try:
            parse(text, "g.net")
            parsed += 1
        except netdsl.SpecError as err:
            assert "reserved word" in str(err) or "label" in str(err), f"{err}\n--- in:\n{text}"
    assert parsed >= 280


def test_both_generators_reach_success_and_many_kinds_of_error() -> None:
    import random

    rng = random.Random(1)
    outcomes: dict[str, int] = {"ok": 0, "error": 0}
    kinds: set[str] = set()
    for i in range(600):
        tape = [rng.randrange(1 << 16) for _ in range(rng.randrange(200))]
        if i % 2:
            stem, text = fuzzlib.zoo_case(tape)
            params = fuzzlib.ZOO_PARAMS.get(stem)
        else:
            text, params = fuzzlib.grammar_case(tape), None
        outcomes[fuzzlib.check_outcome(text, params=params, memory=False)] += 1
        try:
            netdsl.loads(text, fuzzlib.NAME, **(params or {}))
        except netdsl.SpecError as err:
            kinds.add(" ".join(err.diagnostics[0].message.split()[:3]))
    assert outcomes["ok"] >= 5 and outcomes["error"] >= 400, outcomes
    assert len(kinds) >= 50, sorted(kinds)


@_settings(3000)
@given(_tape)
def test_fuzz_grammar(tape: list[int]) -> None:
    text = fuzzlib.grammar_case(tape)
    note(f"spec:\n{text}")
    fuzzlib.check_outcome(text)


@_settings(2200)
@given(_tape)
def test_fuzz_zoo(tape: list[int]) -> None:
    stem, text = fuzzlib.zoo_case(tape)
    note(f"{stem}, mutated:\n{text}")
    fuzzlib.check_outcome(text, params=fuzzlib.ZOO_PARAMS.get(stem), memory=False)


# ------------------------------------------------------------------------------------------------ regressions
# Minimal reproducers of what the fuzzers found (each was an internal error or a broken diagnostic).

REGRESSIONS = {
    # a string value with an escaped newline, quoted in a message, split the diagnostic's first line in two
    "string_with_newline_in_a_message": 'network N {\n    input x: [8]\n    y = "\\n" . shape ( x )\n    output y\n}\n',
    "string_with_newline_as_a_tensor": 'network N {\n    input x: [8]\n    y = x -> ( "a\\nb" -> last )\n'
                                       '    output y\n}\n',
    "string_with_newline_as_a_setting": 'network N {\n    input x: [8]\n    y = x -> dense("a\\nb")\n'
                                        '    output y\n}\n',
    "string_with_line_separator": 'network N {\n    input x: [8]\n    y = x -> dense("a\u2028b")\n    output y\n}\n',
}


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_regression(name: str) -> None:
    text = REGRESSIONS[name]
    assert fuzzlib.check_outcome(text) == "error"
    with pytest.raises(netdsl.SpecError) as info:
        netdsl.loads(text, fuzzlib.NAME)
    first = str(info.value).split("\n")[0]
    assert first.startswith(f"{fuzzlib.NAME}:") and ": error: " in first
    assert "\\n" in first or "\\u2028" in first  # the control character is shown escaped, on the one line


def test_regression_a_valid_network_near_the_layer_budget_loads_fast() -> None:
    """ResNet-50 with `repeat 2048 Bottleneck(256)` (≈20,600 layers) was a valid network that took over 2 s to load
    and summarise: the layer budget is now 10,000, refused in well under that."""
    text = (fuzzlib.REPO / "specs" / "resnet50.net").read_text(encoding="utf-8")
    big = text.replace("repeat 6 Bottleneck(256)", "repeat 2048 Bottleneck(256)")
    assert big != text
    assert fuzzlib.check_outcome(big, memory=False) == "error"
    with pytest.raises(netdsl.SpecError, match="more than 10,000 layers"):
        netdsl.loads(big, fuzzlib.NAME)
    # the largest network the budget allows still loads and prints its summary in time
    ok = text.replace("repeat 6 Bottleneck(256)", "repeat 800 Bottleneck(256)")
    assert fuzzlib.check_outcome(ok, memory=False) == "ok"
