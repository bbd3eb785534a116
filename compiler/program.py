"""`Program`: a compiled network — parameters, planned arena, generated step code — and its Python API."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from netdsl.diagnostics import Diagnostic, SpecError

from .codegen import Slots, generate, load_module
from .init import init_params
from .lower import lower
from .plan import Plan, plan
from .schedule import Buf, Schedule

NP_DTYPES = {"i64": np.int64, "u8": np.uint8}


def fit_blas_threads() -> int | None:
    """Run BLAS on one thread: netdsl's CPU kernels split their work into lanes themselves (compiler/parallel.py)
    and call a single-threaded BLAS from each, so OpenBLAS's own workers would only compete with them (its idle
    threads spin: with both pools on two cores, GEMMs ran 10x slower). Returns the thread count set (None when
    it could not be set). NETDSL_BLAS_THREADS overrides the choice."""
    import os

    want = os.environ.get("NETDSL_BLAS_THREADS")
    try:
        # Numba's np.dot calls SciPy's OpenBLAS, which loads only with scipy.linalg: load it first, or the
        # limit reaches NumPy's copy alone and every lane's GEMM starts threads of its own
        import scipy.linalg.cython_blas  # noqa: F401
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    n = int(want) if want else 1
    threadpool_limits(limits=n, user_api="blas")
    return n


def available_memory() -> int | None:
    """Bytes of memory available to this process (Linux MemAvailable; None when unknown)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _dim(d: Any, n: int) -> int:
    """A view dimension: a number, 'B' (the batch) or 'B*k'."""
    if d == "B":
        return n
    if isinstance(d, str):
        return n * int(d[2:])
    return d


@dataclass
class Compiled:
    """One schedule (eval forward, train forward, or train forward+backward) ready to run."""

    sched: Schedule
    plan: Plan
    slots: Slots
    code: str
    module: Any
    views: dict[int, list[np.ndarray]]
    params: list[np.ndarray]
    grads: list[np.ndarray | None]
    calls: list[Any]  # in emission order (what PROF indexes in a profiling build)
    labels: list[Any] | None = None  # (cross_entropy node, label input node, its buffer, classes), found once


class Program:
    """A network compiled for batches of up to `batch` examples.

    `params` holds the live parameter arrays by name (running statistics included); `grads` the gradients of
    the trainable ones after `loss_and_grads` (or a runtime step).
    """

    DEVICES = ("cpu",)  # what this class runs on; Program(..., device="cuda") makes a CudaProgram

    def __new__(cls, net: Any = None, batch: int = 1, device: str = "cpu", *args: Any, **kwargs: Any) -> Any:
        target = cls
        if cls is Program and device == "cuda":
            from .cuda_program import CudaProgram

            target = CudaProgram
        return super().__new__(target)

    def __init__(self, net: Any, batch: int, device: str = "cpu", dtype: str = "float32", seed: int = 0,
                 fuse: bool = True) -> None:
        if device not in self.DEVICES:
            raise SpecError(Diagnostic(None, f"device '{device}' is not available: the devices are cpu and cuda",
                                       "use --device cpu"))
        if dtype not in ("float32", "float64"):
            raise SpecError(Diagnostic(None, f"dtype must be float32 or float64, found {dtype!r}"))
        if not isinstance(batch, int) or batch < 1:
            raise SpecError(Diagnostic(None, f"batch must be a positive whole number, found {batch!r}"))
        self.net = net
        self.batch = batch
        self.device = device
        self.dtype = dtype
        self.fuse = fuse  # False: every cell runs as its unrolled kernels (to compare with the fused ones)
        self.params: dict[str, np.ndarray] = init_params(net.ir.params, seed, dtype)
        self.trainable = [n for n, s in net.ir.params.items() if s.trainable and not s.state]
        self.grads: dict[str, np.ndarray] = {n: np.zeros_like(self.params[n]) for n in self.trainable}
        self._arenas: dict[str, np.ndarray] = {}
        self._compiled: dict[tuple[Any, ...], Compiled] = {}

    # ------------------------------------------------------------------ compiling schedules
    def _get(self, train: bool, backward: bool, fetch: tuple[str, ...] = (), loss: bool = False,
             profile: bool = False, check: bool = False) -> Compiled:
        key = (train, backward, fetch, loss, profile, check)
        c = self._compiled.get(key)
        if c is not None:
            return c
        try:
            sched = lower(self.net, train=train, fetch=list(fetch), backward=backward, with_loss=loss or backward,
                          fuse=self.fuse)
        except KeyError as exc:
            names = ", ".join(n.name for n in self.net.ir if n.name and n.op not in ("const",))
            raise SpecError(Diagnostic(None, f"fetch: no layer named {exc.args[0]!r} in {self.net.name}",
                                       f"layers: {names[:400]}")) from None
        p = plan(sched, self.batch, self.dtype)
        self._fits(sched, p)
        mode = "train" if train else "eval"
        title = f"network {self.net.name} from {self.net.source}, {mode}" + (" with backward" if backward else "")
        code, slots, calls = generate(sched, title, profile=profile, device=self.device, check=check)
        # the interface buffers get slots too (the code may only have seen them through reshaped views)
        for b in [*sched.inputs.values(), *sched.outputs.values(), *sched.fetch.values()] + (
                [sched.loss] if sched.loss is not None else []):
            slots.view(b)
        module = load_module(code)
        self._grow(p)
        params = [self.params[n] for n in slots.params]
        grads = [self.grads.get(n) for n in slots.params]
        c = Compiled(sched, p, slots, code, module, {}, params, grads, calls)
        self._compiled[key] = c
        return c

    def _fits(self, sched: Schedule, p: Plan) -> None:
        """Refuse a plan that cannot fit in the memory available, before allocating anything."""
        avail = available_memory()
        size = 8 if self.dtype == "float64" else 4
        fixed = sum(s.size for s in self.net.ir.params.values()) * size * 3
        need = p.peak_bytes + fixed
        if avail is None or need <= 0.9 * avail:
            return
        fit = self._largest_batch(sched, 0.9 * avail - fixed)
        hint = f"the largest batch that fits is {fit}" if fit >= 1 else "even batch 1 does not fit: use a smaller network"
        raise SpecError(Diagnostic(None, f"{self.net.name} at batch {self.batch} needs {need / 2**30:.2f} GiB "
                                   f"(planned peak {p.peak_bytes:,} bytes plus parameters and gradients), but only "
                                   f"{avail / 2**30:.2f} GiB of memory is available", hint))

    def _largest_batch(self, sched: Schedule, budget: float) -> int:
        """The largest batch below this one whose planned peak fits `budget` bytes (0 when batch 1 does not):
        a bisection over plans, since the peak is not linear in the batch (per-lane workspaces are fixed)."""
        def fits(b: int) -> bool:
            return plan(sched, b, self.dtype).peak_bytes <= budget

        lo, hi = 0, self.batch  # fits(lo) (or lo == 0), not fits(hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if fits(mid):
                lo = mid
            else:
                hi = mid
        return lo

    def _grow(self, p: Plan) -> None:
        for dt, elements in p.arena_elements.items():
            have = self._arenas.get(dt)
            if have is None or have.size < elements:
                self._arenas[dt] = np.zeros(max(1, elements), dtype=NP_DTYPES.get(dt, self.dtype))
                for c in self._compiled.values():
                    c.views.clear()

    def _views(self, c: Compiled, n: int) -> list[np.ndarray]:
        v = c.views.get(n)
        if v is None:
            v = []
            for b, template in c.slots.views:
                shape = tuple(_dim(d, n) for d in template)
                arena = self._arenas[b.dtype]
                size = math.prod(shape)
                v.append(arena[b.offset : b.offset + size].reshape(shape))
            c.views[n] = v
        return v

    # ------------------------------------------------------------------ running
    def _feed(self, c: Compiled, inputs: dict[str, Any]) -> int:
        n = None
        missing = [k for k in c.sched.inputs if k not in inputs]
        if missing:
            raise SpecError(Diagnostic(None, f"missing input {missing[0]!r} (the network needs: "
                                       f"{', '.join(c.sched.inputs)})"))
        for name, b in c.sched.inputs.items():
            x = np.asarray(inputs[name])
            want = b.shape
            if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want:
                raise SpecError(Diagnostic(None, f"input {name!r} expects shape (batch, {', '.join(map(str, want))})"
                                           f", found {tuple(x.shape)}"))
            if n is None:
                n = x.shape[0]
            elif x.shape[0] != n:
                raise SpecError(Diagnostic(None, f"inputs disagree on the batch size: {n} and {x.shape[0]} ({name!r})"))
            if b.dtype == "i64" and x.dtype.kind not in "iu":
                raise SpecError(Diagnostic(None, f"input {name!r} holds integer ids, found {x.dtype} values"))
        if n is None:
            n = 1
        if not 1 <= n <= self.batch:
            raise SpecError(Diagnostic(None, f"batch of {n} examples, but the program was compiled for at most "
                                       f"{self.batch}", "compile with a larger batch"))
        views = self._views(c, n)
        for name, b in c.sched.inputs.items():
            views[c.slots.view(b)][...] = inputs[name]
        self._check_labels(c, n)
        return n

    def _check_labels(self, c: Compiled, n: int) -> None:
        if c.labels is None:  # which inputs are class labels, found once per schedule (not every step)
            c.labels = []
            for node in self.net.ir:
                if node.op == "cross_entropy" and node.inputs[1].node in self.net.ir.inputs.values():
                    label_node = self.net.ir.node(node.inputs[1].node)
                    b = c.sched.inputs.get(label_node.attrs["name"])
                    if b is not None:
                        c.labels.append((node, label_node, b, self.net.ir.type_of(node.inputs[0]).shape[-1]))
        for node, label_node, b, vocab in c.labels:
            labels = self._views(c, n)[c.slots.view(b)]
            ok = (labels == node.attrs["ignore"]) | ((labels >= 0) & (labels < vocab))
            if not ok.all():
                bad = labels[~ok].flat[0]
                raise SpecError(Diagnostic(node.span, f"label {bad} is out of range for {vocab} classes "
                                           f"(input {label_node.attrs['name']!r})"))

    def _run(self, c: Compiled, n: int, train: bool, update: bool, seed: int, step: int, backward: bool) -> None:
        views = self._views(c, n)
        c.module.forward(views, c.params, c.grads, n, train, update, seed, step)
        if backward:
            c.module.backward(views, c.params, c.grads, n, train, update, seed, step)

    def _read(self, c: Compiled, b: Buf, n: int) -> np.ndarray:
        return np.array(self._views(c, n)[c.slots.view(b)], copy=True)

    def forward(self, inputs: dict[str, Any], train: bool = False, fetch: list[str] | None = None,
                seed: int = 0, step: int = 0) -> dict[str, np.ndarray]:
        """The network's outputs (and `fetch`ed intermediate values by layer name) for a batch of inputs."""
        c = self._get(train, False, tuple(fetch or ()))
        n = self._feed(c, inputs)
        self._run(c, n, train, False, seed, step, False)
        out = {k: self._read(c, b, n) for k, b in c.sched.outputs.items()}
        out.update({k: self._read(c, b, n) for k, b in c.sched.fetch.items()})
        return out

    def loss(self, inputs: dict[str, Any], train: bool = False, seed: int = 0, step: int = 0) -> float:
        if self.net.ir.loss is None:
            raise SpecError(Diagnostic(None, f"network {self.net.name} declares no loss"))
        c = self._get(train, False, (), loss=True)
        n = self._feed(c, inputs)
        self._run(c, n, train, False, seed, step, False)
        return float(self._views(c, n)[c.slots.view(c.sched.loss)])

    def precompile(self, inputs: dict[str, Any] | None = None) -> int:
        """Compile the kernels of the training step (when there is a loss) and of the forward pass on every core,
        into Numba's cache (`compiler/precompile.py`); their first calls then load them. `inputs` only give
        the types (default: zeros, batch 1). Returns how many kernels the worker processes compiled (0 when all
        were cached)."""
        from .precompile import precompile, record_calls

        if type(self).DEVICES != ("cpu",):  # the CUDA program's kernels are compiled by numba.cuda, uncached
            return 0
        if inputs is None:
            inputs = {}
            for name, nid in self.net.ir.inputs.items():
                t = self.net.ir.node(nid).outputs[0]
                inputs[name] = np.zeros((1,) + t.shape, dtype=np.int64 if t.is_int else self.dtype)

        try:
            calls = []
            runs = ((True, True), (False, False)) if self.net.ir.loss is not None else ((False, False),)
            for train, backward in runs:
                c = self._get(train, backward, ())
                n = self._feed(c, inputs)
                calls += record_calls(lambda c=c, n=n, t=train, b=backward: self._run(c, n, t, False, 0, 0, b),
                                      c.module)
            return precompile(calls)
        except Exception:  # noqa: BLE001 - a speed-up only: the step compiles (and reports) as it always did
            return 0

    def loss_and_grads(self, inputs: dict[str, Any], seed: int = 0, step: int = 0,
                       update_stats: bool = True) -> tuple[float, dict[str, np.ndarray]]:
        """Train-mode loss and the gradient of every trainable parameter (copies)."""
        loss = self.step_grads(inputs, seed=seed, step=step, update_stats=update_stats)
        return loss, {k: g.copy() for k, g in self.grads.items()}

    def step_grads(self, inputs: dict[str, Any], seed: int = 0, step: int = 0, update_stats: bool = True,
                   outputs: bool = False) -> Any:
        """Forward and backward in train mode into `self.grads` (live arrays); the runtime's hot path."""
        if self.net.ir.loss is None:
            raise SpecError(Diagnostic(None, f"network {self.net.name} declares no loss: nothing to train"))
        c = self._get(True, True, ())
        n = self._feed(c, inputs)
        self._run(c, n, True, update_stats, seed, step, True)
        loss = float(self._views(c, n)[c.slots.view(c.sched.loss)])
        if outputs:
            return loss, {k: self._views(c, n)[c.slots.view(b)] for k, b in c.sched.outputs.items()}
        return loss

    def profile(self, inputs: dict[str, Any], steps: int | None = None, warmup: int = 2,
                budget: float = 1.0) -> list[dict[str, Any]]:
        """Time every kernel call of the training step (or the forward pass when there is no loss).

        Returns one row per call in program order: kernel, node name, spec location and text, seconds per
        step, and FLOPs per step of the node (for GFLOP/s); then the overhead row, the rest of the step time
        (it also carries `steps`, how many steps were timed).

        Each call's time is its median over the profiled steps less the timer's own cost; the step time is the
        median of plain (untimed) steps as `step_grads` (or `forward`) runs them, in rounds alternating with
        the profiled ones, so that neither a preempted step nor a change in the machine's load meanwhile skews
        the figures.
        `steps` defaults to as many as fit in about `budget` seconds (5 to 200).
        """
        import time

        from .codegen import source_text

        backward = self.net.ir.loss is not None
        c = self._get(backward, backward, (), profile=True)

        sync = getattr(self, "synchronize", lambda: None)  # a device's queued work is part of its step

        def plain() -> float:  # one step as a caller runs it (the two schedules share the arena)
            t = time.perf_counter()
            if backward:
                self.step_grads(inputs, update_stats=False)
            else:
                self.forward(inputs)
            sync()
            return time.perf_counter() - t

        one = min(plain() for _ in range(max(1, warmup)))
        n = self._feed(c, inputs)
        for i in range(warmup):
            self._run(c, n, backward, False, 0, i, backward)
        if steps is None:
            steps = int(min(200, max(5, budget / max(one, 1e-9) / 2)))
        prof = c.module.PROF
        # rounds of profiled steps, then plain ones: each round's first step of either kind (cold after the
        # other schedule ran) is not counted
        rounds = min(5, max(1, steps // 10))
        per_call: list[list[float]] = []
        plain_times: list[float] = []
        for r in range(rounds):
            count = steps // rounds + (1 if r < steps % rounds else 0)
            n = self._feed(c, inputs)
            for i in range(count + 1):
                prof[:] = [0.0] * len(prof)
                self._run(c, n, backward, False, 0, i, backward)
                if i:
                    per_call.append(list(prof))
            times = [plain() for _ in range(count + 1)]
            plain_times.extend(times[1:])
        step = float(np.median(plain_times))
        secs = np.maximum(0.0, np.median(per_call, axis=0) - _timer_cost())
        rows = []
        for call, s in zip(c.calls, secs, strict=True):
            node = call.node
            where = f"{node.span.file}:{node.span.line}" if node is not None and node.span is not None else ""
            rows.append({"kernel": call.fn, "node": node.name if node is not None else "", "where": where,
                         "source": source_text(node) if node is not None else "", "note": call.note,
                         "seconds": float(s)})
        rows.append({"kernel": "(overhead)", "node": "", "where": "", "source": "", "note": "",
                     "seconds": max(0.0, step - sum(r["seconds"] for r in rows)), "steps": steps})
        return rows

    def detect_anomaly(self, inputs: dict[str, Any], seed: int = 0, step: int = 0) -> dict[str, Any] | None:
        """Run a training step checking every kernel's arrays; describe the first non-finite value, if any.

        Returns None when everything stays finite, else the op (name, spec location and text), the kernel and
        whether it happened in the forward or the backward pass. Parameters and running statistics are left
        as they were (a checked step changes nothing).
        """
        from .codegen import source_text

        backward = self.net.ir.loss is not None
        c = self._get(backward, backward, (), check=True)
        saved = {k: v.copy() for k, v in self.params.items()}
        n = self._feed(c, inputs)
        views = self._views(c, n)
        phase = "forward"
        try:
            c.module.forward(views, c.params, c.grads, n, backward, False, seed, step)
            phase = "backward"
            if backward:
                c.module.backward(views, c.params, c.grads, n, backward, False, seed, step)
        except FloatingPointError as exc:
            call = c.calls[exc.args[0]]
            node = call.node
            return {"phase": phase, "kernel": call.fn, "node": node.name if node is not None else "",
                    "where": f"{node.span.file}:{node.span.line}" if node is not None and node.span else "",
                    "source": source_text(node) if node is not None else "", "note": call.note}
        finally:
            for k, v in saved.items():
                self.params[k][...] = v
        return None

    # ------------------------------------------------------------------ inspection
    def code(self, train: bool = True) -> str:
        return self._get(train, train and self.net.ir.loss is not None, ()).code

    def plan_text(self, train: bool = True) -> str:
        c = self._get(train, train and self.net.ir.loss is not None, ())
        return c.plan.describe(c.sched)

    def peak_bytes(self, train: bool = True) -> int:
        return self._get(train, train and self.net.ir.loss is not None, ()).plan.peak_bytes

    def _repr_html_(self) -> str:
        """Jupyter: a summary table (layers, shapes, parameters, MACs, planned peak) and the generated step code."""
        from netdsl.graph import program_html

        return program_html(self)

    def __repr__(self) -> str:
        return f"<Program {self.net.name} batch≤{self.batch} {self.dtype} on {self.device}>"


def _timer_cost(repeats: int = 2000) -> float:
    """What the profiling build's timer adds to each call's time: `_t = _clock()` … `PROF[i] += _clock() - _t`
    around nothing (the median of many)."""
    from time import perf_counter as _clock

    prof = [0.0]
    samples = np.zeros(repeats)
    for k in range(repeats):
        prof[0] = 0.0
        _t = _clock()
        prof[0] += _clock() - _t
        samples[k] = prof[0]
    return float(np.median(samples))
