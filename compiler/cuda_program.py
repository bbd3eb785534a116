"""`CudaProgram`: a compiled network whose arena, parameters and gradients live on a CUDA device.

`netdsl.compile(net, device="cuda")` returns one. The schedule, buffer plan and generated step code are the
CPU program's; the step code imports ``kernels/cuda`` instead of ``kernels/cpu`` and runs on views of one
device arena per dtype. Data crosses between host and device only at batch boundaries: the inputs are copied
in by `_feed`, and the outputs, fetched values and the loss are copied out when they are read.

Parameters and gradients are device arrays (numba device arrays):
- `prog.params[name]` / `prog.grads[name]` are the live device arrays. Read one with
  ``prog.params[name].copy_to_host()`` (or ``np.asarray(...)``); set one with ``prog.params[name][...] = a``
  (a host-to-device copy; these arrays take the Ellipsis index that numba's own device arrays refuse, so
  code written for the CPU program's numpy parameters keeps working). `to_host()` returns host copies of every parameter (or of the named ones),
  `to_device(arrays)` copies host arrays in by name (shapes checked), `grads_to_host()` copies the gradients.
- The runtime's optimizer updates device parameters in place with the kernels of ``kernels/cuda/optim``,
  and checkpoints read them through ``np.asarray`` (one copy per parameter per checkpoint).

Two small rewrites adapt the generated code to the device (the CPU text is unchanged): a loss kernel's value
is written into its device buffer (``out=``) instead of being returned to the host, and the loss gradient
reaches a loss backward as that device buffer instead of a host float. A profiling build synchronises the
device around each call so that the times are the kernels'.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from netdsl.diagnostics import Diagnostic, SpecError

from .codegen import load_module
from .program import NP_DTYPES, Compiled, Program, _dim
from .schedule import Buf


def _no_device(why: str) -> SpecError:
    return SpecError(Diagnostic(None, f"device 'cuda' is not available: {why}",
                                "install numba-cuda (pip install 'netdsl[cuda]') on a machine with an NVIDIA GPU "
                                "and its driver, or set NUMBA_ENABLE_CUDASIM=1 before starting Python to run "
                                "the CUDA kernels in numba's (slow) simulator; or use --device cpu"))


def cuda_status() -> tuple[bool, str]:
    from .kernels.cuda import status

    return status()


class DeviceParams(dict):
    """Parameters (or gradients) by name as device arrays; `device` tells the runtime where they live."""

    device = "cuda"


_SCALAR = re.compile(r"float\((V\[\d+\](?:\[[^\]\[]*\])*)\.flat\[0\]\)")
_RESULT = re.compile(r"^(\s*)(V\[\d+\](?:\[[^\]\[]*\])*)\[\.\.\.\] = (k_\w+\.\w+)\(")


def _close_paren(line: str, start: int) -> int:
    """Index of the parenthesis closing the one just before `start` (the code's own brackets balance)."""
    depth = 1
    for i in range(start, len(line)):
        ch = line[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError(f"unbalanced call in generated code: {line!r}")


def device_code(code: str) -> str:
    """The generated step code adapted to device buffers (see the module docstring)."""
    out = []
    for line in code.splitlines():
        if line.startswith("#"):
            out.append(line)
            continue
        line = _SCALAR.sub(r"\1", line)
        m = _RESULT.match(line)
        if m:
            end = _close_paren(line, m.end())
            args = line[m.end():end]
            line = f"{m.group(1)}{m.group(3)}({args}, out={m.group(2)}){line[end + 1:]}"
        if line.strip() == "from time import perf_counter as _clock":
            line = "from netdsl.compiler.cuda_program import synced_clock as _clock"
        out.append(line)
    return "\n".join(out) + ("\n" if code.endswith("\n") else "")


def synced_clock() -> float:
    """perf_counter after the device has finished its queued work (the profiling build's clock)."""
    import time

    from numba import cuda

    cuda.synchronize()
    return time.perf_counter()


class CudaProgram(Program):
    """A `Program` on a CUDA device (see the module docstring for how parameters are read and set)."""

    DEVICES = ("cuda",)

    def __init__(self, net: Any, batch: int, device: str = "cuda", dtype: str = "float32", seed: int = 0,
                 fuse: bool = True) -> None:
        ok, why = cuda_status()
        if not ok:
            raise _no_device(why)
        from numba import cuda

        self._cuda = cuda
        self.device_name = why
        super().__init__(net, batch, device="cuda", dtype=dtype, seed=seed, fuse=fuse)
        from .kernels.cuda._common import settable

        host = self.params
        self.params = DeviceParams({n: settable(cuda.to_device(np.ascontiguousarray(a))) for n, a in host.items()})
        self.grads = DeviceParams({n: settable(self._zeros(host[n].shape, host[n].dtype)) for n in self.trainable})

    # ------------------------------------------------------------------ device memory
    def _zeros(self, shape: tuple[int, ...], dtype: Any) -> Any:
        from .kernels.cuda.util import zero

        a = self._cuda.device_array(shape, dtype)
        zero(a)
        return a

    def _grow(self, p: Any) -> None:
        for dt, elements in p.arena_elements.items():
            have = self._arenas.get(dt)
            if have is None or have.size < elements:
                self._arenas[dt] = self._zeros((max(1, elements),), NP_DTYPES.get(dt, self.dtype))
                for c in self._compiled.values():
                    c.views.clear()

    def _views(self, c: Compiled, n: int) -> list[Any]:
        v = c.views.get(n)
        if v is None:
            v = []
            for b, template in c.slots.views:
                shape = tuple(_dim(d, n) for d in template) or (1,)  # a scalar is a one-element array
                size = math.prod(shape)
                dtype = NP_DTYPES.get(b.dtype, self.dtype)
                if size == 0:  # a placeholder: a fresh empty array (no slicing of the arena)
                    v.append(self._cuda.device_array(shape, dtype))
                    continue
                arena = self._arenas[b.dtype]
                v.append(arena[b.offset : b.offset + size].reshape(shape))
            c.views[n] = v
        return v

    def _get(self, *args: Any, **kwargs: Any) -> Compiled:
        c = super()._get(*args, **kwargs)
        if not getattr(c, "on_device", False):  # adapt the step code once per compiled schedule
            code = device_code(c.code)
            if code != c.code:
                c.code = code
                c.module = load_module(code)
            c.on_device = True
        return c

    def _fits(self, sched: Any, p: Any) -> None:
        """Refuse a plan whose arena cannot fit in the GPU's free memory (the simulator's is the host's)."""
        from numba.core import config

        if config.ENABLE_CUDASIM:
            super()._fits(sched, p)
            return
        try:
            free = int(self._cuda.current_context().get_memory_info()[0])
        except Exception:  # noqa: BLE001 - a driver that cannot say: let the allocation decide
            return
        have = sum(a.nbytes for a in self._arenas.values())  # replaced when it grows
        size = 8 if self.dtype == "float64" else 4
        state = 2 * sum(self.net.ir.params[n].size for n in self.trainable) * size  # an optimizer's moments
        need = p.peak_bytes + state
        if need <= 0.9 * (free + have):
            return
        raise SpecError(Diagnostic(None, f"{self.net.name} at batch {self.batch} needs {need / 2**30:.2f} GiB of "
                                   f"GPU memory (planned peak {p.peak_bytes:,} bytes plus optimizer state), but "
                                   f"only {(free + have) / 2**30:.2f} GiB is free on {self.device_name}",
                                   "use a smaller batch (or --device cpu)"))

    # ------------------------------------------------------------------ host <-> device at batch boundaries
    def _feed(self, c: Compiled, inputs: dict[str, Any]) -> int:
        n = None
        missing = [k for k in c.sched.inputs if k not in inputs]
        if missing:
            raise SpecError(Diagnostic(None, f"missing input {missing[0]!r} (the network needs: "
                                       f"{', '.join(c.sched.inputs)})"))
        host: dict[str, np.ndarray] = {}
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
            host[name] = x
        if n is None:
            n = 1
        if not 1 <= n <= self.batch:
            raise SpecError(Diagnostic(None, f"batch of {n} examples, but the program was compiled for at most "
                                       f"{self.batch}", "compile with a larger batch"))
        views = self._views(c, n)
        for name, b in c.sched.inputs.items():
            view = views[c.slots.view(b)]
            a = np.ascontiguousarray(host[name], dtype=NP_DTYPES.get(b.dtype, self.dtype))
            host[name] = a
            view.copy_to_device(a.reshape(tuple(view.shape)))
        self._check_ids(c, host)
        return n

    def _check_ids(self, c: Compiled, host: dict[str, np.ndarray]) -> None:
        """Labels and token ids out of range, on the host (a device kernel cannot raise)."""
        ir = self.net.ir
        for node in ir:
            if node.op not in ("cross_entropy", "embedding"):
                continue
            src = node.inputs[1 if node.op == "cross_entropy" else 0]
            if src.node not in ir.inputs.values():
                continue
            inp = ir.node(src.node)
            ids = host.get(inp.attrs["name"])
            if ids is None:
                continue
            if node.op == "cross_entropy":
                vocab = ir.type_of(node.inputs[0]).shape[-1]
                ok = (ids == node.attrs["ignore"]) | ((ids >= 0) & (ids < vocab))
                what = "label {} is out of range for {} classes"
            else:
                vocab = node.attrs["vocab"]
                ok = (ids >= 0) & (ids < vocab)
                what = "token id {} is out of range for a vocabulary of {}"
            if not ok.all():
                bad = ids[~ok].flat[0]
                raise SpecError(Diagnostic(node.span, what.format(bad, vocab) + f" (input {inp.attrs['name']!r})"))

    def _read(self, c: Compiled, b: Buf, n: int) -> np.ndarray:
        v = self._views(c, n)[c.slots.view(b)]
        shape = tuple(_dim(d, n) for d in c.slots.views[c.slots.view(b)][1])
        return v.copy_to_host().reshape(shape)

    def _loss_value(self, c: Compiled, n: int) -> float:
        return float(self._views(c, n)[c.slots.view(c.sched.loss)].copy_to_host().reshape(-1)[0])

    # ------------------------------------------------------------------ the Program API
    def loss(self, inputs: dict[str, Any], train: bool = False, seed: int = 0, step: int = 0) -> float:
        if self.net.ir.loss is None:
            raise SpecError(Diagnostic(None, f"network {self.net.name} declares no loss"))
        c = self._get(train, False, (), loss=True)
        n = self._feed(c, inputs)
        self._run(c, n, train, False, seed, step, False)
        return self._loss_value(c, n)

    def loss_and_grads(self, inputs: dict[str, Any], seed: int = 0, step: int = 0,
                       update_stats: bool = True) -> tuple[float, dict[str, np.ndarray]]:
        """Train-mode loss and the gradient of every trainable parameter (host copies)."""
        loss = self.step_grads(inputs, seed=seed, step=step, update_stats=update_stats)
        return loss, self.grads_to_host()

    def step_grads(self, inputs: dict[str, Any], seed: int = 0, step: int = 0, update_stats: bool = True,
                   outputs: bool = False) -> Any:
        """Forward and backward in train mode into `self.grads` (device arrays). The loss (and, with
        `outputs`, the outputs) are copied to the host: the step's only synchronisation."""
        if self.net.ir.loss is None:
            raise SpecError(Diagnostic(None, f"network {self.net.name} declares no loss: nothing to train"))
        c = self._get(True, True, ())
        n = self._feed(c, inputs)
        self._run(c, n, True, update_stats, seed, step, True)
        loss = self._loss_value(c, n)
        if outputs:
            return loss, {k: self._read(c, b, n) for k, b in c.sched.outputs.items()}
        return loss

    def detect_anomaly(self, inputs: dict[str, Any], seed: int = 0, step: int = 0) -> dict[str, Any] | None:
        """`Program.detect_anomaly` on the device: every kernel's arrays are copied to the host and checked
        (slow: a diagnosis). Parameters and running statistics are restored afterwards."""
        from .codegen import source_text

        backward = self.net.ir.loss is not None
        c = self._get(backward, backward, (), check=True)
        saved = self.to_host()
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
            self.to_device(saved)
        return None

    # ------------------------------------------------------------------ parameters on the host
    def to_host(self, names: list[str] | None = None) -> dict[str, np.ndarray]:
        """Host copies of the parameters (all, or the named ones)."""
        return {k: self.params[k].copy_to_host() for k in (names if names is not None else self.params)}

    def to_device(self, arrays: dict[str, Any]) -> None:
        """Copy host arrays into the parameters of the same names (shapes must match)."""
        for k, a in arrays.items():
            if k not in self.params:
                raise SpecError(Diagnostic(None, f"no parameter named {k!r} in {self.net.name}"))
            p = self.params[k]
            a = np.ascontiguousarray(a, dtype=p.dtype)
            if tuple(a.shape) != tuple(p.shape):
                raise SpecError(Diagnostic(None, f"parameter {k!r} has shape {tuple(p.shape)}, found {a.shape}"))
            p.copy_to_device(a)

    def grads_to_host(self) -> dict[str, np.ndarray]:
        """Host copies of the gradients of the trainable parameters."""
        return {k: g.copy_to_host() for k, g in self.grads.items()}

    def synchronize(self) -> None:
        """Wait until the device has finished every queued kernel."""
        self._cuda.synchronize()

    def __repr__(self) -> str:
        return f"<CudaProgram {self.net.name} batch≤{self.batch} {self.dtype} on {self.device_name}>"
