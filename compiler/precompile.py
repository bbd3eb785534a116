"""Cold compile on every core: the kernels a step calls, compiled by worker processes into Numba's cache.

Numba compiles one function at a time in a process (its compiler lock), and a cold LeNet-5 step spends ~25 s
there, one core busy. `precompile` first records the step's kernel calls: the generated module runs once
against stand-ins for the kernel modules that only note each call's Numba argument types (no kernel runs,
nothing compiles). The calls whose kernels are not yet in Numba's on-disk cache are then compiled by one
worker process per core, the largest first (each worker pulls the next when it is done); the program's own
first step loads them from the cache as a warm start would. Workers that share a helper compile it each (the
cache keeps one); a call the workers could not compile is simply compiled by the first step, as before.

When everything is cached (a warm start) no worker starts, and the check costs a read of each kernel's cache
index. NETDSL_COMPILE_WORKERS sets the worker count (0 or 1: compile in this process, as the step needs them).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

# compiled first: the kernels with the most code below them (a worker busy with one of these last would leave
# the other cores idle at the end)
_FIRST = ("conv2d_winograd_backward", "conv2d_backward", "conv2d_few_backward", "conv2d_direct_backward",
          "conv2d_winograd_forward", "conv2d_forward", "conv2d_few_forward", "conv2d_direct_forward", "lstm",
          "gru", "attention", "dense_backward", "layernorm", "batchnorm", "pool")


class _Recorder:
    """Stands in for a kernel module: each call notes (module, kernel, argument types) and returns 0.0."""

    def __init__(self, module: str, calls: list[tuple[str, str, tuple[Any, ...]]]) -> None:
        self._module = module
        self._calls = calls

    def __getattr__(self, name: str) -> Any:
        import numba

        def record(*args: Any) -> float:
            try:
                sig = tuple(numba.typeof(a) for a in args)
            except ValueError:  # an argument Numba cannot type here (not a CPU kernel's): left to the step
                return 0.0
            self._calls.append((self._module, name, sig))
            return 0.0

        return record


@contextlib.contextmanager
def _recording(module: Any, calls: list[tuple[str, str, tuple[Any, ...]]]) -> Iterator[None]:
    saved = {k: v for k, v in vars(module).items() if k.startswith("k_")}
    try:
        for k, v in saved.items():
            setattr(module, k, _Recorder(v.__name__, calls))
        yield
    finally:
        for k, v in saved.items():
            setattr(module, k, v)


def record_calls(run: Any, module: Any) -> list[tuple[str, str, tuple[Any, ...]]]:
    """The distinct kernel calls `run()` makes through the generated `module`, in order of first call."""
    calls: list[tuple[str, str, tuple[Any, ...]]] = []
    with _recording(module, calls):
        run()
    seen: dict[tuple[str, str, tuple[Any, ...]], None] = {}
    for c in calls:
        seen.setdefault(c, None)
    return list(seen)


def _cached(module: str, name: str, sig: tuple[Any, ...], loaded: bool = True) -> bool:
    """Whether Numba's on-disk cache holds kernel `module.name` for argument types `sig` (read from its index,
    nothing loaded), or (`loaded`) this process has it compiled. True when this cannot be told (Numba's cache
    internals changed): then nothing is precompiled, which costs time, never correctness."""
    import importlib

    try:
        disp = getattr(importlib.import_module(module), name)
        if loaded and sig in disp.overloads:
            return True
        cache = disp._cache
        key = cache._index_key(sig, disp.targetctx.codegen())
        return key in cache._cache_file._load_index()
    except Exception:  # noqa: BLE001 - any failure here only disables the speed-up
        return True


def _order(call: tuple[str, str, tuple[Any, ...]]) -> tuple[bool, int]:
    # backward kernels first, the largest families first among them: a backward compiles the helpers its
    # forward shares (conv's im2col), which the forward then finds in the cache rather than compiling again
    name = call[1]
    return "backward" not in name, next((i for i, k in enumerate(_FIRST) if k in name), len(_FIRST))


def workers() -> int:
    from .parallel import lanes

    env = os.environ.get("NETDSL_COMPILE_WORKERS", "")
    if env.strip().isdigit():
        return int(env)
    return min(lanes(), 8)  # each worker is a full Numba/LLVM process of a few hundred MB


def _encode(sig: tuple[Any, ...]) -> list[Any] | None:
    """Argument types as JSON (arrays and the scalars the step code passes), or None for any other type: the
    workers get plain data, nothing unpickled."""
    from numba import types

    out: list[Any] = []
    for t in sig:
        if isinstance(t, types.Array) and isinstance(t.dtype, (types.Integer, types.Float, types.Boolean)):
            out.append(["array", str(t.dtype), t.ndim, t.layout, not t.mutable, t.aligned])
        elif t in (types.int64, types.float64, types.float32, types.boolean):
            out.append(["scalar", str(t)])
        else:
            return None
    return out


def _decode(enc: list[Any]) -> tuple[Any, ...]:
    import numpy as np
    from numba import from_dtype, types

    sig = []
    for e in enc:
        if e[0] == "array":
            sig.append(types.Array(from_dtype(np.dtype(e[1])), e[2], e[3], readonly=e[4], aligned=e[5]))
        else:
            sig.append(getattr(types, e[1]))
    return tuple(sig)


def _compile_one(module: str, name: str, sig: tuple[Any, ...]) -> bool:
    """In a worker: compile one kernel for one signature (Numba writes it to its cache)."""
    import importlib

    try:
        getattr(importlib.import_module(module), name).compile(sig)
    except Exception:  # noqa: BLE001 - the step compiles it itself and reports any real error
        return False
    return True


def precompile(calls: list[tuple[str, str, tuple[Any, ...]]], n_workers: int | None = None) -> int:
    """Compile the `calls` (from `record_calls`) that are not cached, in parallel worker processes. Returns how
    many the workers compiled."""
    todo = sorted((c for c in dict.fromkeys(calls) if _encode(c[2]) is not None and not _cached(*c)), key=_order)
    n = min(workers() if n_workers is None else n_workers, len(todo))
    if n <= 1 or os.name == "nt":  # Windows: no select() on pipes; the step compiles as before
        return 0
    import json
    import selectors
    import subprocess
    import sys

    # plain subprocesses, not multiprocessing: its spawned children re-run the caller's __main__ (a user's
    # script without a main guard would start over), and a fork would copy Numba's running thread pool
    procs: list[Any] = []
    jobs = iter(todo)
    sel = selectors.DefaultSelector()

    def feed(p: Any) -> bool:
        job = next(jobs, None)
        if job is None:
            p.stdin.close()
            return False
        p.stdin.write(json.dumps([job[0], job[1], _encode(job[2])]) + "\n")
        p.stdin.flush()
        return True

    compiled = 0
    try:
        for _ in range(n):
            procs.append(subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
        for p in procs:
            if feed(p):
                sel.register(p.stdout, selectors.EVENT_READ, p)
            else:
                sel.register(p.stdout, selectors.EVENT_READ, None)
        while sel.get_map():
            for key, _ in sel.select():
                line = key.fileobj.readline()
                if not line:  # the worker exited (or died): its job, if any, is left to the step
                    sel.unregister(key.fileobj)
                    continue
                reply = line.strip()
                compiled += reply == "ok"
                if reply == "uncached":  # compiled but not saved (no writable cache): the rest would be lost too
                    jobs = iter(())
                if key.data is not None and not feed(key.data):
                    sel.modify(key.fileobj, selectors.EVENT_READ, None)
    except OSError:
        pass
    finally:
        sel.close()
        for p in procs:
            with contextlib.suppress(OSError):
                if p.stdin and not p.stdin.closed:
                    p.stdin.close()
            p.wait()
            with contextlib.suppress(OSError):
                p.stdout.close()
    return compiled


def _lock_cache_saves() -> None:
    """In a worker: Numba writes a function's cache index and data files unlocked, so two workers saving the same
    helper for different signatures at once could pick the same data file. Saves take a lock per index file."""
    try:
        import fcntl

        from numba.core import caching

        save = caching.IndexDataCacheFile.save
    except (ImportError, AttributeError):
        return

    def locked(self: Any, key: Any, data: Any) -> Any:
        with open(self._index_path + ".lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                return save(self, key, data)
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    caching.IndexDataCacheFile.save = locked


def _serve() -> None:
    """A worker: one job per line of stdin (JSON: module, kernel, argument types), one line of reply each."""
    import json
    import sys

    _lock_cache_saves()
    for line in sys.stdin:
        module, name, enc = json.loads(line)
        sig = _decode(enc)
        if not _compile_one(module, name, sig):
            reply = "failed"
        else:
            reply = "ok" if _cached(module, name, sig, loaded=False) else "uncached"
        sys.stdout.write(reply + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    _serve()
