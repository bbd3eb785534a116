"""One training step of LeNet-5 (1×32×32 input, batch 2) on `cuda`, in the simulator, against the CPU step.

The heaviest simulator test (~30 s: the simulator runs one Python thread per CUDA thread), kept in its own
module so that the wrapper test can run it in a second process beside the others."""

from __future__ import annotations

import numpy as np

import netdsl

LENET5 = """
network LeNet5(classes=10) {
    input image: [1, 32, 32]
    input label: int[]
    logits = image
        -> c1: conv(6, kernel=5) -> tanh -> s2: avgpool(2)
        -> c3: conv(16, kernel=5) -> tanh -> s4: avgpool(2)
        -> flatten -> f5: dense(120) -> tanh -> f6: dense(84) -> tanh -> out: dense(classes)
    output logits
    loss cross_entropy(logits, label)
}
"""


def test_lenet5_training_step_at_batch_2_matches_cpu():
    net = netdsl.loads(LENET5)
    cpu = netdsl.compile(net, batch=2)
    gpu = netdsl.compile(net, batch=2, device="cuda")
    gpu.to_device(cpu.params)
    rng = np.random.default_rng(0)
    x = {"image": rng.standard_normal((2, 1, 32, 32)).astype(np.float32), "label": np.array([3, 7])}
    lc, gc = cpu.loss_and_grads(x)
    lg, gg = gpu.loss_and_grads(x)
    assert abs(lg - lc) <= 1e-5 * abs(lc) + 1e-7, (lg, lc)
    assert sorted(gg) == sorted(gc) == sorted(cpu.trainable)
    for k in gc:
        err = float(np.max(np.abs(gg[k].astype(np.float64) - gc[k])))
        limit = 1e-5 * float(np.max(np.abs(gc[k]))) + 1e-7
        assert err <= limit, f"{k}: max |cuda - cpu| = {err:.3g} > {limit:.3g}"
