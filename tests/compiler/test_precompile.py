"""Cold compile on every core (`compiler/precompile.py`): the step's kernel calls are recorded without running a
kernel, compiled by worker processes into Numba's cache, and the step then compiles nothing itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
from netdsl.compiler.precompile import _decode, _encode, _order, record_calls

import netdsl

TINY = """network Tiny {
    input x: [8]
    input y: [3]
    out = x -> fc: dense(3) -> tanh
    output out
    loss mse(out, y)
}
"""


def _feeds(batch: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"x": rng.standard_normal((batch, 8)).astype(np.float32),
            "y": rng.standard_normal((batch, 3)).astype(np.float32)}


def test_recording_runs_no_kernel() -> None:
    prog = netdsl.compile(netdsl.loads(TINY, name="tiny.net"), batch=4)
    c = prog._get(True, True, ())
    n = prog._feed(c, _feeds(4))
    views = prog._views(c, n)
    for v in views:
        if v.dtype.kind == "f":
            v[...] = np.nan
    calls = record_calls(lambda: prog._run(c, n, True, False, 0, 0, True), c.module)
    names = [f"{m.rsplit('.', 1)[-1]}.{k}" for m, k, _ in calls]
    assert names[:2] == ["dense.dense_forward", "activation.tanh_forward"]
    assert "dense.dense_backward" in names and len(names) == len(set(calls))  # each distinct call once
    # the arena is as it was: the stand-ins noted the calls and ran nothing (the step code itself stores the
    # loss kernel's return value, the stand-in's 0.0)
    loss = c.slots.view(c.sched.loss)
    changed = [i for i, v in enumerate(prog._views(c, n)) if v.dtype.kind == "f" and not np.isnan(v).all()]
    assert changed == [loss] and prog._views(c, n)[loss] == 0.0
    # the workers get the argument types as JSON, and rebuild the same Numba types
    for _, _, sig in calls:
        enc = _encode(sig)
        assert enc is not None and _decode(json.loads(json.dumps(enc))) == sig
    # backward kernels are compiled first (they compile the helpers their forwards share)
    assert min(calls, key=_order)[1].endswith("_backward")


SCRIPT = r"""
import gc, json, sys
import numpy as np
import netdsl
from numba.core.registry import CPUDispatcher
sys.path.insert(0, sys.argv[1])
from test_precompile import TINY, _feeds
prog = netdsl.compile(netdsl.loads(TINY, name="tiny.net"), batch=4)
feeds = _feeds(4)
first = prog.precompile(feeds)
again = prog.precompile(feeds)
loss = prog.step_grads(feeds, update_stats=False)
out = prog.forward(feeds)["out"]
ds = [d for d in gc.get_objects() if isinstance(d, CPUDispatcher)]
misses = sum(sum(d.stats.cache_misses.values()) for d in ds)
hits = sum(sum(d.stats.cache_hits.values()) for d in ds)
print(json.dumps([first, again, misses, hits, loss, out.tolist()]))
"""


def _run(tmp_path: object, workers: str) -> list:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / f"numba{workers}"),  # type: ignore[operator]
               NETDSL_CACHE_DIR=str(tmp_path / f"steps{workers}"), NETDSL_COMPILE_WORKERS=workers)  # type: ignore[operator]
    here = os.path.dirname(os.path.abspath(__file__))
    r = subprocess.run([sys.executable, "-c", SCRIPT, here], env=env, capture_output=True, text=True, timeout=600,
                       check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_workers_fill_the_cache_and_the_step_compiles_nothing(tmp_path: object) -> None:
    first, again, misses, hits, loss, out = _run(tmp_path, "2")
    assert first >= 6  # dense, tanh and mse, forward and backward, from an empty cache
    assert again == 0  # all cached now: no worker starts
    assert misses == 0 and hits >= first  # the step loaded every kernel the workers compiled
    # the same numbers as a program compiled the ordinary way, in this process
    _, _, misses0, _, loss0, out0 = _run(tmp_path, "0")
    assert misses0 > 0  # no workers: the step compiled them itself
    assert loss == loss0 and out == out0
