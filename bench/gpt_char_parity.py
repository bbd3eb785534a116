"""netdsl's specs/gpt_char.net against the PyTorch reference (bench/gpt_char_torch.py) from identical weights.

Copies the reference's weights into the compiled spec, runs one identical batch of training windows through
both, and prints the loss and every gradient's largest relative difference (max |a - b| / max |b|), then a few
AdamW steps with clipping (the same lr schedule) and the parameters' differences after them. In float32 the
differences should be rounding (~1e-6 relative); anything larger is a difference in the model or the update.

    taskset -c 1 python bench/gpt_char_parity.py PATH/tinyshakespeare.txt [--steps 5] [--dtype float64]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

import netdsl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpt_char_torch import GPT, load, lr_at

SPEC = Path(__file__).resolve().parents[1] / "specs" / "gpt_char.net"


class Part:
    """A reference parameter, or rows of one (q, k, v are stacked in c_attn): its value and its gradient."""

    def __init__(self, p: torch.Tensor, rows: slice = slice(None)) -> None:
        self.p, self.rows = p, rows

    def value(self) -> np.ndarray:
        return self.p.detach()[self.rows].numpy()

    def grad(self) -> np.ndarray:
        assert self.p.grad is not None
        return self.p.grad[self.rows].numpy()


def torch_to_netdsl(model: GPT, n_embd: int) -> dict[str, Part]:
    """netdsl parameter name -> the reference's parameter (rows of c_attn for q, k, v)."""
    out = {"wte.weight": Part(model.wte.weight), "wpe.weight": Part(model.wpe.weight),
           "ln_f.weight": Part(model.ln_f.weight)}
    for i, b in enumerate(model.h):
        p = f"h.{i}."
        out[p + "ln_1.weight"] = Part(b.ln_1.weight)
        out[p + "ln_2.weight"] = Part(b.ln_2.weight)
        for j, name in enumerate("qkv"):
            out[p + f"attn.{name}.weight"] = Part(b.attn.c_attn.weight, slice(j * n_embd, (j + 1) * n_embd))
        out[p + "attn.out.weight"] = Part(b.attn.c_proj.weight)
        out[p + "mlp.c_fc.weight"] = Part(b.c_fc.weight)
        out[p + "mlp.c_proj.weight"] = Part(b.c_proj.weight)
    return out


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max() / max(np.abs(b).max(), 1e-30))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data")
    ap.add_argument("--steps", type=int, default=5, help="AdamW steps to compare after the gradients")
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    tdtype = torch.float64 if a.dtype == "float64" else torch.float32
    train_ids, _, vocab = load(a.data)
    model = GPT(vocab, 64, 4, 4, 128, "nanogpt").to(tdtype)
    net = netdsl.load(SPEC, vocab=vocab)
    prog = netdsl.compile(net, batch=12, device="cpu", dtype=a.dtype)
    mapping = torch_to_netdsl(model, 128)
    assert set(mapping) == set(prog.trainable), set(mapping) ^ set(prog.trainable)
    for name, t in mapping.items():
        prog.params[name][...] = t.value()
    from netdsl.runtime.optim import Optimizer

    from netdsl.recipe import CallSpec

    opt_n = Optimizer(CallSpec("adamw", (), {"lr": 1e-3, "beta2": 0.99, "weight_decay": 0.1, "decay_min_rank": 2}),
                      prog.params, prog.trainable)
    params = list(model.parameters())
    opt_t = torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
                               {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
                              lr=1e-3, betas=(0.9, 0.99), eps=1e-8)
    rng = np.random.default_rng(a.seed)
    for step in range(a.steps + 1):
        ix = rng.integers(0, len(train_ids) - 64, 12)
        grid = ix[:, None] + np.arange(64)[None, :]
        x, y = train_ids[grid], train_ids[grid + 1]
        logits = model(torch.from_numpy(x))
        loss_t = F.cross_entropy(logits.view(-1, vocab), torch.from_numpy(y).view(-1))
        opt_t.zero_grad(set_to_none=True)
        loss_t.backward()
        loss_n, grads = prog.loss_and_grads({"tokens": x, "targets": y}, seed=0, update_stats=False)
        worst = max(((rel(grads[n], t.grad()), n) for n, t in mapping.items()))
        print(f"step {step}: loss netdsl {loss_n:.8f} torch {float(loss_t):.8f} (diff {loss_n - float(loss_t):+.2e});"
              f" largest gradient difference {worst[0]:.2e} ({worst[1]})")
        if step == 0:
            for n, t in mapping.items():
                print(f"    {n:24s} grad rel diff {rel(grads[n], t.grad()):.2e}")
        if step == a.steps:
            break
        lr = lr_at(step, 1e-3, 1e-4, 100, 2000)
        norm_t = float(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0))
        for g in opt_t.param_groups:
            g["lr"] = lr
        opt_t.step()
        norm_n = opt_n.step(grads, lr, 1.0)
        worst = max(((rel(prog.params[n], t.value()), n) for n, t in mapping.items()))
        print(f"    after the update (lr {lr:.2e}): grad norm netdsl {norm_n:.6f} torch {norm_t:.6f}; "
              f"largest parameter difference {worst[0]:.2e} ({worst[1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
