"""CUDA kernels (numba.cuda): the device backend of the compiled step code.

Every family of ``kernels/cpu`` has a module here with the same function names and signatures (plus
``optim`` for the optimizer updates). Each function is host-callable: it takes device arrays (numba device
arrays, views of a CudaProgram's arena) and launches one or more ``@cuda.jit`` kernels on the default stream;
nothing is copied to or from the host, so a step's kernels queue up without waiting. Conventions kept from
the CPU backend: C-contiguous arrays, batch axis first, float32 or float64 (one dtype per call), int64 ids,
labels and argmax; backward kernels overwrite their outputs; absent biases and unneeded gradients are
zero-length arrays. The differences:
- a loss forward takes an optional ``out`` device array for its value, and a loss backward's gradient may be
  a device array (see ``loss``), so no step waits on a host round trip;
- what a CPU kernel reports by raising inside the kernel (a label or token id out of range) cannot be
  raised on a device: ``CudaProgram`` checks such inputs on the host before copying them in;
- sums that several threads add into one place (embedding rows, overlapping max-pool windows) use atomics,
  so their order (and last bits) may vary from run to run; everything else is deterministic.

numba.cuda is either numba's built-in CUDA target (deprecated upstream, present in numba 0.68) or the
``numba-cuda`` package (``pip install netdsl[cuda]``), which replaces it under the same import. Without a
GPU, ``NUMBA_ENABLE_CUDASIM=1`` (set before numba is imported) runs everything in numba's simulator.
"""

from __future__ import annotations

FAMILIES = ("activation", "attention", "conv", "dense", "elementwise", "embed", "loss", "norm", "pool",
            "recurrent", "shape", "util", "optim")


def status() -> tuple[bool, str]:
    """(usable, description): whether kernels can run here — a GPU, or the simulator when enabled."""
    try:
        from numba import cuda
        from numba.core import config
    except ImportError as exc:  # a numba without its CUDA target and no numba-cuda
        return False, f"numba.cuda cannot be imported ({exc})"
    if config.ENABLE_CUDASIM:
        return True, "the numba CUDA simulator (NUMBA_ENABLE_CUDASIM=1)"
    try:
        if cuda.is_available():
            dev = cuda.get_current_device()
            name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
            return True, f"{name} (compute capability {dev.compute_capability[0]}.{dev.compute_capability[1]})"
    except Exception as exc:  # noqa: BLE001 - a broken driver reports through many exception types
        return False, f"the CUDA driver failed: {exc}"
    return False, "no CUDA GPU found"
