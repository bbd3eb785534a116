"""Whole programs on `cuda` (in the simulator) against the same programs on the CPU: training steps of a
char-level LSTM (T 4, hidden 8) and of a one-layer transformer (T 4, width 8), the Program API on device
arrays, the optimizer on device parameters, and `netdsl train/eval --device cuda` end to end.
LeNet-5 has its own module (test_cuda_lenet.py) so that it can run in a second process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from netdsl.compiler.cuda_program import CudaProgram

import netdsl
from netdsl.diagnostics import SpecError

F32_REL, F32_ABS = 1e-5, 1e-7


def assert_step_matches(cpu, gpu, x, seed=0, step=0):
    """Same parameters, same batch: the loss and every gradient agree (float32 tolerance per array)."""
    gpu.to_device(cpu.to_host() if hasattr(cpu, "to_host") else cpu.params)
    lc, gc = cpu.loss_and_grads(x, seed=seed, step=step)
    lg, gg = gpu.loss_and_grads(x, seed=seed, step=step)
    assert abs(lg - lc) <= F32_REL * abs(lc) + F32_ABS, (lg, lc)
    assert sorted(gc) == sorted(gg)
    for k in gc:
        err = float(np.max(np.abs(gg[k].astype(np.float64) - gc[k]))) if gc[k].size else 0.0
        limit = F32_REL * float(np.max(np.abs(gc[k]))) + F32_ABS
        assert err <= limit, f"{k}: max |cuda - cpu| = {err:.3g} > {limit:.3g}"
    return lc


def pair(text, batch=2, **kw):
    net = netdsl.loads(text)
    return net, netdsl.compile(net, batch=batch, **kw), netdsl.compile(net, batch=batch, device="cuda", **kw)


CHAR_LSTM = """
network CharLSTM(vocab=11, seq=4) {
    input tokens: int[seq]
    input targets: int[seq]
    logits = tokens -> embedding(vocab, 6) -> lstm(8) -> out: dense(vocab)
    output logits
    loss cross_entropy(logits, targets)
}"""

TRANSFORMER = """
network Tiny(vocab=11, seq=4, d=8) {
    input tokens: int[seq]
    input targets: int[seq]
    let wte = embedding(vocab, d)
    x = tokens -> wte -> positional_embedding(seq) -> dropout(0.1)
    x = x + (x -> layernorm -> attention(2, causal=true) -> dropout(0.1))
    x = x + (x -> layernorm -> dense(4 * d) -> gelu -> dense(d))
    logits = x -> layernorm -> unembed(wte)
    output logits
    loss cross_entropy(logits, targets, smoothing=0.1)
}"""


def tokens(batch=2, seq=4, vocab=11, seed=0):
    rng = np.random.default_rng(seed)
    return {"tokens": rng.integers(0, vocab, (batch, seq)), "targets": rng.integers(0, vocab, (batch, seq))}


def test_char_lstm_training_step_matches_cpu():
    _, cpu, gpu = pair(CHAR_LSTM)
    assert isinstance(gpu, CudaProgram) and "recurrent.lstm_embed_forward" in gpu.code()  # the fused kernels
    assert_step_matches(cpu, gpu, tokens())


def test_transformer_layer_training_step_matches_cpu_dropout_masks_included():
    _, cpu, gpu = pair(TRANSFORMER)
    assert "activation.dropout_forward" in gpu.code()
    assert_step_matches(cpu, gpu, tokens(seed=1), seed=3, step=5)
    # and in eval mode (no dropout): the outputs
    x = tokens(seed=2)
    np.testing.assert_allclose(gpu.forward(x)["logits"], cpu.forward(x)["logits"], rtol=1e-5, atol=1e-6)


def test_spec_written_cell_runs_as_loops_over_time_on_the_device():
    # a user's cell is unrolled (time-major copies, state carries, backprop through time), not fused
    text = """
    cell RNN(hidden)(x, h: [hidden]) {
        h = tanh(x -> wx: dense(hidden) + h -> wh: dense(hidden, bias=false))
        return h, h
    }
    network R {
        input xs: [3, 2]
        input y: [3, 4]
        a = enc: unroll RNN(4) over xs
        b = (dec: unroll RNN(4) over xs reverse) -> tanh
        out = (a * b) -> dense(4)
        output out
        loss mse(out, y)
    }"""
    _, cpu, gpu = pair(text)
    assert "util.time_major" in gpu.code() and "recurrent." not in gpu.code()
    rng = np.random.default_rng(4)
    assert_step_matches(cpu, gpu, {"xs": rng.standard_normal((2, 3, 2)), "y": rng.standard_normal((2, 3, 4))})


def test_conv_batchnorm_maxpool_train_and_eval_with_running_statistics():
    text = """
    network C {
        input image: [2, 6, 6]
        input label: int[]
        logits = image -> conv(4, kernel=3, pad=1) -> batchnorm -> relu -> maxpool(2)
            -> conv(4, kernel=1) -> global_avgpool -> dense(3)
        output logits
        loss cross_entropy(logits, label)
    }"""
    _, cpu, gpu = pair(text, batch=3)
    rng = np.random.default_rng(5)
    x = {"image": rng.standard_normal((3, 2, 6, 6)).astype(np.float32), "label": np.array([0, 2, 1])}
    assert_step_matches(cpu, gpu, x)  # updates the running statistics on both sides
    stats = [k for k in cpu.params if "running" in k]
    assert stats
    host = gpu.to_host(stats)
    for k in stats:
        np.testing.assert_allclose(host[k], cpu.params[k], rtol=1e-5, atol=1e-7, err_msg=k)
    np.testing.assert_allclose(gpu.forward(x)["logits"], cpu.forward(x)["logits"], rtol=1e-5, atol=1e-6)
    # a batch smaller than the compiled one, and float64 with a tighter tolerance
    x2 = {"image": x["image"][:2], "label": x["label"][:2]}
    np.testing.assert_allclose(gpu.forward(x2)["logits"], cpu.forward(x2)["logits"], rtol=1e-5, atol=1e-6)
    net64 = netdsl.loads(text)
    c64 = netdsl.compile(net64, batch=3, dtype="float64")
    g64 = netdsl.compile(net64, batch=3, dtype="float64", device="cuda")
    g64.to_device(c64.params)
    np.testing.assert_allclose(g64.forward(x)["logits"], c64.forward(x)["logits"], rtol=1e-12, atol=1e-13)


def test_program_api_on_device_arrays():
    net, cpu, gpu = pair(CHAR_LSTM)
    assert isinstance(netdsl.compiler.program.Program(net, 2, "cuda"), CudaProgram)
    assert "kernels.cuda" in gpu.code() and "kernels.cpu" not in gpu.code()
    assert "out=V[" in gpu.code() and ".flat[0]" not in gpu.code()
    host = gpu.to_host()
    assert sorted(host) == sorted(cpu.params) and all(isinstance(a, np.ndarray) for a in host.values())
    # setting by name: to_device, or assigning into the device array
    w = np.arange(np.prod(host["out.weight"].shape), dtype=np.float32).reshape(host["out.weight"].shape)
    gpu.to_device({"out.weight": w})
    np.testing.assert_array_equal(gpu.params["out.weight"].copy_to_host(), w)
    gpu.params["out.bias"][...] = np.full(gpu.params["out.bias"].shape, 0.5, np.float32)
    np.testing.assert_array_equal(np.asarray(gpu.params["out.bias"]), 0.5)
    with pytest.raises(SpecError, match="shape"):
        gpu.to_device({"out.bias": np.zeros(3)})
    with pytest.raises(SpecError, match="no parameter"):
        gpu.to_device({"nope": np.zeros(3)})
    # fetch an intermediate value; train-mode loss; outputs with the step
    gpu.to_device(cpu.params)
    x = tokens(seed=3)
    got = gpu.forward(x, fetch=["out"])
    want = cpu.forward(x, fetch=["out"])
    np.testing.assert_allclose(got["out"], want["out"], rtol=1e-5, atol=1e-6)
    assert abs(gpu.loss(x, train=True) - cpu.loss(x, train=True)) < 1e-5
    _, outs = gpu.step_grads(x, outputs=True)
    assert isinstance(outs["logits"], np.ndarray) and outs["logits"].shape == (2, 4, 11)
    # labels out of range are refused on the host, with the CPU's message
    bad = dict(x, targets=np.full((2, 4), 11))
    with pytest.raises(SpecError, match="out of range for 11 classes"):
        gpu.loss(bad)
    with pytest.raises(SpecError, match="token id 12 is out of range"):
        gpu.loss(dict(x, tokens=np.full((2, 4), 12)))
    with pytest.raises(SpecError, match="at most 2"):
        gpu.loss(tokens(batch=3))
    rows = gpu.profile(x, steps=1, warmup=0)
    assert rows[-1]["kernel"] == "(overhead)" and any(r["kernel"] == "recurrent.lstm_embed_backward" for r in rows)


def test_optimizer_updates_device_parameters_like_the_cpu():
    from netdsl.runtime.optim import Optimizer

    from netdsl.recipe import CallSpec

    # (a small MLP, not the transformer: its key bias has a zero gradient up to rounding, which Adam's
    # normalised step turns into ±lr updates of either sign)
    _, cpu, gpu = pair("""network M {
        input x: [5]
        input y: [3]
        out = x -> dense(6) -> tanh -> dense(3)
        output out
        loss mse(out, y)
    }""", batch=4)
    gpu.to_device(cpu.params)
    rng = np.random.default_rng(7)
    x = {"x": rng.standard_normal((4, 5)), "y": rng.standard_normal((4, 3))}
    for name, kwargs, clip in (("adamw", {"lr": 0.01, "weight_decay": 0.1, "decay_min_rank": 2}, 0.5),
                               ("sgd", {"lr": 0.1, "momentum": 0.9, "nesterov": True}, None),
                               ("rmsprop", {"lr": 0.01, "momentum": 0.5}, None)):
        oc = Optimizer(CallSpec(name, (), kwargs, None), cpu.params, cpu.trainable)
        og = Optimizer(CallSpec(name, (), kwargs, None), gpu.params, gpu.trainable)
        assert all(not isinstance(a, np.ndarray) for a in og.state.values())  # state lives on the device
        for step in range(2):
            cpu.step_grads(x, step=step)
            gpu.step_grads(x, step=step)
            nc = oc.step(cpu.grads, oc.lr, clip)
            ng = og.step(gpu.grads, og.lr, clip)
            if clip is not None:
                assert abs(nc - ng) <= 1e-5 * nc
        host = gpu.to_host()
        for k in cpu.trainable:
            np.testing.assert_allclose(host[k], cpu.params[k], rtol=2e-5, atol=2e-6, err_msg=f"{name} {k}")


def test_netdsl_train_and_eval_with_device_cuda(tmp_path: Path, capsys):
    from netdsl.runtime import checkpoint as ckpt

    from netdsl.cli import main

    spec = tmp_path / "mlp.net"
    spec.write_text("""
network MLP {
    input x: [4]
    input y: int[]
    logits = x -> h: dense(8) -> tanh -> out: dense(3)
    output logits
    loss cross_entropy(logits, y)
}
train MLP {
    data npz("blobs.npz")
    optimizer adam(lr=0.01)
    batch 8
}
""", encoding="utf-8")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "blobs.npz", x=rng.standard_normal((24, 4)).astype(np.float32),
             y=rng.integers(0, 3, 24))
    runs = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / device
        assert main(["train", str(spec), "--steps", "3", "--val", "0", "--device", device, "--out", str(out),
                     "-q"]) == 0
        runs[device] = ckpt.load(out)[1]
    assert sorted(runs["cpu"]) == sorted(runs["cuda"]) and "opt/h.weight/m" in runs["cuda"]
    for k, a in runs["cpu"].items():
        np.testing.assert_allclose(runs["cuda"][k], a, rtol=1e-4, atol=1e-6, err_msg=k)
    capsys.readouterr()
    import json

    res = {}
    for device in ("cpu", "cuda"):
        assert main(["eval", str(spec), "--checkpoint", str(tmp_path / "cuda"), "--data", str(tmp_path / "blobs.npz"),
                     "--device", device, "--json"]) == 0
        res[device] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert abs(res["cpu"]["loss"] - res["cuda"]["loss"]) < 1e-5
    assert res["cpu"]["accuracy"] == res["cuda"]["accuracy"]
    assert main(["compile", str(spec), "--device", "cuda", "--batch", "2"]) == 0
    assert "(float32, cuda)" in capsys.readouterr().out


def test_detect_anomaly_names_the_same_op_on_the_device():
    text = """
    network A {
        input x: [3]
        input y: [2]
        h = x -> dense(4) -> relu
        z = (h / (h - h)) -> dense(2)
        output z
        loss mse(z, y)
    }"""
    _, cpu, gpu = pair(text)
    gpu.to_device(cpu.params)
    rng = np.random.default_rng(8)
    x = {"x": rng.standard_normal((2, 3)), "y": rng.standard_normal((2, 2))}
    with np.errstate(all="ignore"):
        want = cpu.detect_anomaly(x)
        got = gpu.detect_anomaly(x)
    assert want is not None and got == want
    np.testing.assert_array_equal(gpu.to_host()["dense_1.weight"], cpu.params["dense_1.weight"])


def test_parameters_and_optimizer_state_take_the_runtimes_ellipsis_writes():
    # runtime.train.load_params / --init-from and Optimizer.load_state write `a[...] = saved`
    from netdsl.runtime.optim import Optimizer
    from netdsl.runtime.train import load_params
    from numba import cuda

    from netdsl.recipe import CallSpec

    _, cpu, gpu = pair(CHAR_LSTM)
    load_params(gpu, {f"param/{k}": v for k, v in cpu.params.items()})
    for k, v in gpu.to_host().items():
        np.testing.assert_array_equal(v, cpu.params[k])
    opt = Optimizer(CallSpec("adam", (), {"lr": 0.01}, None), gpu.params, gpu.trainable)
    opt.load_state({k: np.ones(tuple(a.shape), np.float32) for k, a in opt.state.items()}, 3)
    assert all(np.all(np.asarray(a) == 1) for a in opt.state.values()) and opt.t == 3
    with pytest.raises(TypeError, match="Ellipsis"):  # what a plain device array does (here as on a GPU)
        cuda.device_array(3, np.float32)[...] = np.zeros(3, np.float32)
