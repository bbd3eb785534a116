"""Tests that run the CUDA kernels in numba's simulator. They need NUMBA_ENABLE_CUDASIM=1 in the environment
before numba is imported, so they are collected only in a pytest process started that way: the wrapper test
`tests/cuda/test_cuda_simulator.py` starts one (``python -m pytest tests/cuda/sim``). In any other process
this directory collects nothing (except with NETDSL_CUDA_GPU=1: the same tests on a real GPU).

Under the simulator a device array is a wrapper around a numpy array that forwards any attribute to it, so
code written against numpy could pass here and fail on a GPU. The fixture below narrows the forwarding to
the attributes a real numba device array has (anything else raises AttributeError) and refuses an Ellipsis
index as numba does, so host code that treats device arrays as numpy arrays fails here too; and a kernel
given a host array fails (the backend keeps everything on the device).
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
ON_GPU = os.environ.get("NETDSL_CUDA_GPU") == "1"  # the same tests on a real GPU (the `cuda`-marked wrapper)

if not (SIMULATED or ON_GPU):
    collect_ignore_glob = ["test_*.py"]

# what numba's DeviceNDArray offers (its instance attributes and methods) beyond the simulator's own methods
DEVICE_ARRAY_ATTRS = {"shape", "strides", "dtype", "size", "ndim", "gpu_data", "stream", "alloc_size", "nbytes",
                      "flags", "T", "as_cuda_arg", "bind", "copy_to_device", "copy_to_host", "getitem", "setitem",
                      "is_c_contiguous", "is_f_contiguous", "ravel", "reshape", "split", "squeeze", "transpose",
                      "view", "__array__", "__cuda_array_interface__", "__len__"}


def pytest_configure(config):
    if SIMULATED:
        # the simulator's threads meet at every barrier through the GIL: switching often makes that ~5x faster
        sys.setswitchinterval(1e-5)
        _count_module_swaps()
        _lock_shared_arrays()
        # the wrapper runs three of these processes at once, all filling the same kernel cache: Numba saves a
        # function's cache index unlocked, so saves take the precompile workers' lock
        from netdsl.compiler.precompile import _lock_cache_saves

        _lock_cache_saves()
    # the dropout hash wraps uint64 arithmetic on purpose, and a division by zero gives inf as on a GPU;
    # numpy scalars (the simulator's values) warn about both, in threads that np.errstate does not reach
    for what in ("overflow", "divide by zero", "invalid value"):
        config.addinivalue_line("filterwarnings", f"ignore:{what} encountered:RuntimeWarning")


def _count_module_swaps():
    """The simulator points a device function's module globals at its fake `cuda` module for each call and puts
    the real one back on return. Device functions of one module share those globals, so when two block
    threads are inside at once, the first to return restores the real module under the other, which then fails
    with "module 'numba.cuda' has no attribute 'threadIdx'" (seen in a full run of the suite). Swapping once for the
    first thread in and back for the last one out removes the race; launches are sequential, so every thread
    inside wants the same fake module."""
    import threading
    from contextlib import contextmanager

    from numba.cuda.simulator import kernel as sim_kernel

    lock = threading.Lock()
    inside: dict[int, list] = {}  # id(globals) -> [threads inside, the real values]

    @contextmanager
    def counted(fn, fake_cuda_module):
        from numba import cuda

        globs = fn.__globals__
        with lock:
            entry = inside.get(id(globs))
            if entry is None:
                orig = {k: v for k, v in globs.items() if v is cuda}
                globs.update(dict.fromkeys(orig, fake_cuda_module))
                entry = inside[id(globs)] = [0, orig]
            entry[0] += 1
        try:
            yield
        finally:
            with lock:
                entry[0] -= 1
                if entry[0] == 0:
                    globs.update(entry[1])
                    del inside[id(globs)]

    sim_kernel.swapped_cuda_module = counted


def _lock_shared_arrays():
    """The simulator gives a block's threads one shared array per source line of `cuda.shared.array`, looked up
    in a dict and inserted on a miss, without a lock: two threads that switch between the look-up and the
    insert each get an array of their own, and a block reduction then sums only some of its values (seen in
    CI as one wrong row of an attention gradient, once in a full run). The same look-up by the caller's file
    and line, under a lock; dynamic shared memory (shape 0) is one buffer and goes through unchanged."""
    import threading

    from numba.core import types
    from numba.cuda.simulator import kernelapi
    from numba.np import numpy_support

    lock = threading.Lock()
    dynamic = kernelapi.FakeCUDAShared.array

    def array(self, shape, dtype):
        if shape == 0:
            return dynamic(self, shape, dtype)
        if isinstance(dtype, types.Type):
            dtype = numpy_support.as_dtype(dtype)
        frame = sys._getframe(1)
        caller = (frame.f_code.co_filename, frame.f_lineno)
        with lock:
            res = self._allocations.get(caller)
            if res is None:
                res = self._allocations[caller] = np.empty(shape, dtype)
        return res

    kernelapi.FakeCUDAShared.array = array


@pytest.fixture(autouse=True, scope="session")
def _strict_device_arrays():
    if not SIMULATED:
        yield
        return
    from numba.cuda.simulator.cudadrv import devicearray as sim

    cls = sim.FakeCUDAArray
    original = cls.__getattr__, cls.__getitem__, cls.__setitem__

    def strict(self, name):
        if name not in DEVICE_ARRAY_ATTRS:
            raise AttributeError(f"a numba device array has no attribute {name!r} (the simulator's would)")
        return original[0](self, name)

    def no_ellipsis(key):  # numba's device arrays index through dummyarray, which has no Ellipsis
        if key is Ellipsis or (isinstance(key, tuple) and any(k is Ellipsis for k in key)):
            raise TypeError("a numba device array cannot be indexed with an Ellipsis (the simulator's can)")

    def getitem(self, key):
        no_ellipsis(key)
        return original[1](self, key)

    def setitem(self, key, value):
        no_ellipsis(key)
        return original[2](self, key, value)

    # a host array passed to a kernel is copied in and out around the launch (a GPU would do it too, slowly
    # and synchronously): in this backend that is always a bug
    from numba.cuda.simulator.kernel import FakeCUDAKernel

    launch = FakeCUDAKernel.__call__

    def device_args_only(self, *args):
        if not self._device and any(isinstance(a, np.ndarray) and a.ndim > 0 for a in args):
            raise TypeError(f"kernel {self.fn.__name__} was passed a host array")
        return launch(self, *args)

    cls.__getattr__, cls.__getitem__, cls.__setitem__ = strict, getitem, setitem
    FakeCUDAKernel.__call__ = device_args_only
    yield
    cls.__getattr__, cls.__getitem__, cls.__setitem__ = original
    FakeCUDAKernel.__call__ = launch
