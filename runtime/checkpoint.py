"""Checkpoints: `ckpt-STEP.npz` (arrays) + `ckpt-STEP.json` (manifest), each written atomically.

The `.npz` holds the parameters (`param/NAME`, running statistics included) and the optimizer's state
(`opt/NAME/SLOT`). The manifest holds the spec's hash and text, the network's parameter values, the step,
epoch and data position, the RNG description, the run's configuration, the schedule's state, the history, a
text model's vocabulary and the SHA-256 checksum of the arrays (names, dtypes, shapes and bytes).

Writing: a temporary file in the same directory, flushed and fsync'ed, then `os.replace` — first the arrays,
then the manifest that vouches for them, then the directory is fsync'ed. A reader never sees half a file.
Loading reads everything and verifies the checksum before anything is used: a damaged or truncated checkpoint
is refused whole. Loading never unpickles (`allow_pickle=False`; the manifest is JSON).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from netdsl.diagnostics import Diagnostic, SpecError

FORMAT = "netdsl-checkpoint-1"
_NAME = re.compile(r"^ckpt-(\d+)\.json$")


def checksum(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _fsync_dir(d: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path: Path, write: Any) -> None:
    """Write through `write(fileobj)` to a temporary file beside `path`, fsync, then rename over `path`."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def save(directory: str | os.PathLike, step: int, arrays: dict[str, np.ndarray], manifest: dict[str, Any],
         keep: int = 3) -> Path:
    """Write checkpoint `step` into `directory`; keep the newest `keep` checkpoints. Returns the manifest path."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    stem = f"ckpt-{step:08d}"
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    man = dict(manifest)
    man.update({"format": FORMAT, "step": step, "arrays": f"{stem}.npz", "checksum": checksum(arrays),
                "names": sorted(arrays)})
    write_atomic(d / f"{stem}.npz", lambda f: np.savez(f, **arrays))
    text = json.dumps(man, indent=1, sort_keys=True, allow_nan=True)
    write_atomic(d / f"{stem}.json", lambda f: f.write(text.encode("utf-8")))
    _fsync_dir(d)
    if keep > 0:
        for old in checkpoints(d)[:-keep]:
            for p in (old, old.with_suffix(".npz")):
                with contextlib.suppress(OSError):
                    p.unlink()
    return d / f"{stem}.json"


def checkpoints(directory: Path) -> list[Path]:
    """The manifests in a run directory, oldest first."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def locate(where: str | os.PathLike) -> Path:
    """A checkpoint's manifest from a manifest, its `.npz`, or a run directory (its latest checkpoint)."""
    p = Path(where).expanduser()
    if p.is_dir():
        found = checkpoints(p)
        if not found:
            raise SpecError(Diagnostic(None, f"{p}: no checkpoint in this directory (expected ckpt-*.json files)"))
        return found[-1]
    if p.suffix == ".npz":
        p = p.with_suffix(".json")
    if not p.is_file():
        raise SpecError(Diagnostic(None, f"{where}: no such checkpoint"))
    return p


def load(where: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray], Path]:
    """(manifest, arrays, manifest path), verified; a damaged checkpoint raises SpecError and loads nothing."""
    path = locate(where)

    def damaged(what: str) -> SpecError:
        others = [q.name for q in checkpoints(path.parent) if q != path]
        hint = f"earlier checkpoints in {path.parent}: {', '.join(others[-3:])}" if others else None
        return SpecError(Diagnostic(None, f"{path}: damaged checkpoint, refused: {what}", hint))

    try:
        man = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise damaged(f"the manifest is not readable JSON ({exc})") from None
    if not isinstance(man, dict) or man.get("format") != FORMAT:
        raise damaged(f"not a netdsl checkpoint manifest (format {man.get('format') if isinstance(man, dict) else '?'})")
    npz = path.parent / str(man.get("arrays", ""))
    if not npz.is_file():
        raise damaged(f"its arrays file {npz.name} is missing")
    arrays: dict[str, np.ndarray] = {}
    try:
        with np.load(npz, allow_pickle=False) as f:
            for k in f.files:
                arrays[k] = np.array(f[k])
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError, zipfile.LargeZipFile) as exc:
        raise damaged(f"{npz.name} is truncated or corrupt ({type(exc).__name__}: {exc})") from None
    if sorted(arrays) != man.get("names"):
        raise damaged(f"{npz.name} does not hold the arrays its manifest lists")
    if checksum(arrays) != man.get("checksum"):
        raise damaged(f"the checksum of {npz.name} does not match its manifest")
    return man, arrays, path


# ----------------------------------------------------------------------------- comparing with a network


def shapes(params: dict[str, np.ndarray]) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in params.items()}


def mismatch(man: dict[str, Any], net: Any) -> str | None:
    """Why a checkpoint does not fit `net` (naming the differing parameters), or None when it does."""
    if man.get("spec_hash") == net.spec_hash:
        return None
    have = {k: tuple(v) for k, v in man.get("param_shapes", {}).items()}
    want = {k: tuple(p.shape) for k, p in net.ir.params.items()}
    lines = []
    missing = [k for k in want if k not in have]
    extra = [k for k in have if k not in want]
    changed = [k for k in want if k in have and have[k] != want[k]]
    if changed:
        lines.append("shapes differ: " + ", ".join(f"{k} {list(have[k])} in the checkpoint, {list(want[k])} now"
                                                   for k in changed[:6]))
    if missing:
        lines.append("new parameters: " + ", ".join(missing[:8]) + (" …" if len(missing) > 8 else ""))
    if extra:
        lines.append("parameters no longer in the spec: " + ", ".join(extra[:8]) + (" …" if len(extra) > 8 else ""))
    old_vals = man.get("values", {})
    now_vals = encode_values(net.values)
    diff_vals = [k for k in set(old_vals) | set(now_vals) if old_vals.get(k) != now_vals.get(k)]
    if diff_vals:
        lines.append("network parameters differ: " + ", ".join(
            f"{k}={_show(old_vals.get(k))} in the checkpoint, {_show(now_vals.get(k))} now" for k in sorted(diff_vals)))
    if not lines:
        lines.append("same parameters, but the network's structure (its layers or their settings) changed")
    return "; ".join(lines)


def _show(v: Any) -> str:
    if isinstance(v, dict) and "ident" in v:
        return str(v["ident"])
    return json.dumps(v) if v is not None else "(none)"


def encode_values(values: dict[str, Any]) -> dict[str, Any]:
    """Network parameter values as JSON (identifiers as {"ident": name})."""
    return {k: _enc(v) for k, v in values.items()}


def _enc(v: Any) -> Any:
    from netdsl.ops import Ident

    if isinstance(v, Ident):
        return {"ident": v.name}
    if isinstance(v, (list, tuple)):
        return [_enc(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def decode_values(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _dec(v) for k, v in values.items()}


def _dec(v: Any) -> Any:
    from netdsl.ops import Ident

    if isinstance(v, dict) and set(v) == {"ident"}:
        return Ident(v["ident"])
    if isinstance(v, list):
        return [_dec(x) for x in v]
    return v
