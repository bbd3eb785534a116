"""docs/errors.md, the catalogue of errors, agrees with the golden bad specs.

Every spec-error entry (`### Enn · title`) names its examples (`Example: \\`stem.net\\``), shows each as `netdsl
check` prints it and gives a fix; every example is a file in tests/specs/bad/ whose golden expectation (its
`# error:` and `# hint:` header lines) matches the entry's printed diagnostic, and every file there is an example
of exactly one entry. Run-error entries (`### Rnn · title`) name the test that produces them.

    python tests/test_error_catalogue.py --refresh     # re-print every example block after messages changed
"""

from __future__ import annotations

import contextlib
import re
import sys
from pathlib import Path

import pytest

import netdsl

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
BAD = TESTS / "specs" / "bad"
DOC = REPO / "docs" / "errors.md"
WIDTH = 120  # printed lines longer than this are cut (a 400-digit literal), diagnostic first lines excepted
_FIRST = re.compile(r"^(?P<file>\S+?):(?P<line>\d+):(?P<col>\d+): error: (?P<msg>.*)$")
_ENTRY = re.compile(r"^### (?P<id>[ER]\d\d) · (?P<title>.+)$", re.MULTILINE)
_BLOCK = re.compile(r"```text\n(.*?)\n```", re.DOTALL)

sys.path.insert(0, str(TESTS))
from test_bad_specs import read_header


def render(stem: str) -> str:
    """The diagnostics of tests/specs/bad/STEM.net as `netdsl check STEM.net` prints them from that folder
    (repository paths shown relative to the repository, very long lines cut)."""
    with contextlib.chdir(BAD):
        try:
            netdsl.load(f"{stem}.net")
        except netdsl.SpecError as err:
            text = str(err)
        else:  # pragma: no cover - a golden bad spec always fails
            raise AssertionError(f"{stem}.net loads without an error")
    text = text.replace(f"{REPO}/", "")
    return "\n".join(line if len(line) <= WIDTH or _FIRST.match(line) else line[: WIDTH - 1] + "…"
                     for line in text.split("\n"))


def entries() -> list[dict[str, object]]:
    doc = DOC.read_text(encoding="utf-8")
    found = list(_ENTRY.finditer(doc))
    out = []
    for i, m in enumerate(found):
        end = found[i + 1].start() if i + 1 < len(found) else len(doc)
        body = doc[m.end():end]
        body = body.split("\n# ", 1)[0]  # a part heading ends an entry
        ex = re.search(r"^Examples?: (.+)$", body, re.MULTILINE)
        test = re.search(r"^Test: `([^`]+)`$", body, re.MULTILINE)
        fix = re.search(r"^\*\*Fix:\*\* (.+)$", body, re.MULTILINE)
        out.append({"id": m["id"], "title": m["title"], "body": body,
                    "examples": re.findall(r"`([^`]+)\.net`", ex.group(1)) if ex else [],
                    "test": test.group(1) if test else None, "fix": fix.group(1).strip() if fix else "",
                    "blocks": _BLOCK.findall(body)})
    return out


SPEC_ENTRIES = [e for e in entries() if str(e["id"]).startswith("E")] if DOC.exists() else []
RUN_ENTRIES = [e for e in entries() if str(e["id"]).startswith("R")] if DOC.exists() else []


def test_the_catalogue_has_at_least_40_kinds_each_with_an_example_and_a_fix() -> None:
    assert len(SPEC_ENTRIES) >= 40
    titles = [e["title"] for e in SPEC_ENTRIES + RUN_ENTRIES]
    assert len(set(titles)) == len(titles), "two entries with one title"
    ids = [e["id"] for e in SPEC_ENTRIES]
    assert ids == [f"E{i:02d}" for i in range(1, len(ids) + 1)], "entries are numbered in order"
    for e in SPEC_ENTRIES:
        assert e["examples"], f"{e['id']} has no example"
        assert len(e["blocks"]) == len(e["examples"]), f"{e['id']}: one printed diagnostic per example"
        assert len(str(e["fix"])) > 10, f"{e['id']} has no fix"
    for e in RUN_ENTRIES:
        assert e["test"] and e["blocks"] and len(str(e["fix"])) > 10, e["id"]


def test_every_bad_spec_is_in_the_catalogue_once() -> None:
    named = [s for e in SPEC_ENTRIES for s in e["examples"]]
    files = sorted(p.stem for p in BAD.glob("*.net"))
    assert sorted(set(named)) == sorted(named), "an example appears in two entries"
    missing = sorted(set(files) - set(named))
    assert not missing, f"bad specs missing from docs/errors.md: {missing} (add them; --refresh prints them)"
    unknown = sorted(set(named) - set(files))
    assert not unknown, f"examples that are not files in tests/specs/bad/: {unknown}"


@pytest.mark.parametrize("entry", SPEC_ENTRIES, ids=[f"{e['id']}-{e['examples'][0]}" for e in SPEC_ENTRIES])
def test_each_example_matches_its_golden_expectation(entry: dict[str, object]) -> None:
    for stem, block in zip(entry["examples"], entry["blocks"], strict=True):  # type: ignore[call-overload]
        header = read_header(BAD / f"{stem}.net")
        first = header.errors[0]
        m = _FIRST.match(block.split("\n")[0])
        assert m, f"{stem}: the printed example does not start with FILE:LINE:COL: error:"
        assert m["file"] == (first.file or f"{stem}.net"), (stem, m["file"])
        assert (int(m["line"]), int(m["col"])) == (first.line, first.col), (stem, block.split("\n")[0])
        assert first.message in m["msg"], (stem, first.message, m["msg"])
        for e in header.errors:
            if e.hint is not None:
                assert e.hint in block, f"{stem}: the hint '{e.hint}' is not in the printed example"
        for e in header.errors[1:]:
            assert f"{stem}.net:{e.line}:{e.col}: error: " in block, f"{stem}: a further error is not shown"
        # and the printed example is what netdsl prints today, at least its first line
        assert render(stem).split("\n")[0] == block.split("\n")[0], f"{stem}: stale (run with --refresh)"


@pytest.mark.parametrize("entry", RUN_ENTRIES, ids=[str(e["id"]) for e in RUN_ENTRIES])
def test_each_run_error_names_an_existing_test(entry: dict[str, object]) -> None:
    path, _, func = str(entry["test"]).partition("::")
    f = REPO / path
    assert f.is_file(), path
    assert re.search(rf"^def {re.escape(func)}\(", f.read_text(encoding="utf-8"), re.MULTILINE), f"{path} has no {func}"


def refresh() -> int:
    """Re-print every example block of docs/errors.md from the current diagnostics."""
    doc = DOC.read_text(encoding="utf-8")
    parts = re.split(r"(^### E\d\d · .+$)", doc, flags=re.MULTILINE)
    for i in range(1, len(parts), 2):
        body = parts[i + 1]
        ex = re.search(r"^Examples?: (.+)$", body, re.MULTILINE)
        stems = re.findall(r"`([^`]+)\.net`", ex.group(1)) if ex else []
        printed = iter(["```text\n" + render(s) + "\n```" for s in stems])
        head, sep, rest = body.partition("\n# ")  # a part heading ends an entry: run errors are written by hand
        parts[i + 1] = _BLOCK.sub(lambda _m, printed=printed: next(printed), head) + sep + rest
    DOC.write_text("".join(parts), encoding="utf-8")
    print(f"refreshed {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(refresh() if "--refresh" in sys.argv else 0)
