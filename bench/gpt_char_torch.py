"""A PyTorch reference for specs/gpt_char.net: nanoGPT's character model and its CPU training recipe.

Written from nanoGPT's model.py and train.py (github.com/karpathy/nanoGPT) for the configuration of its README's
"I only have a macbook" run: 4 layers, 4 heads, width 128, block 64, no bias, dropout 0; batch 12, AdamW
(lr 1e-3, betas 0.9/0.99, eps 1e-8, weight decay 0.1 on tensors of rank ≥ 2 only), 100 warm-up steps
lr·(it+1)/(warmup+1), cosine decay to 1e-4 at step 2000, gradient clipping at 1.0, 2000 steps; nanoGPT's
initialisation (every linear and embedding weight N(0, 0.02), attn.c_proj and mlp.c_proj N(0, 0.02/√(2·n_layer))).

The final validation loss is measured as netdsl measures it (runtime/data.py `split`, runtime/evaluate.py):
the last round(10%) of the characters held out, cut into consecutive windows of 64 from its first character
(1,742 windows), and the summed negative log-likelihood of every target divided by their count, in float64.
nanoGPT itself reports the mean over 20 batches of random windows, a noisier figure.

    taskset -c 1 python bench/gpt_char_torch.py PATH/tinyshakespeare.txt [--seed S] [--sampling random|epochs]

`--sampling epochs` draws training batches as netdsl's Batcher does (per epoch: a random phase and a
permutation of the windows at stride 64, from numpy's SeedSequence([seed, 1, epoch])) instead of nanoGPT's
12 uniformly random offsets per step. `--init torch` starts from PyTorch's default layer initialisation (what
netdsl did before specs could carry `std=`). PyTorch is a benchmark dependency only.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class Attention(nn.Module):
    def __init__(self, n_embd: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=False)  # q, k, v stacked, as nanoGPT
        self.c_proj = nn.Linear(n_embd, n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # softmax(QKᵀ/√d_k)V
        return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, eps=1e-5, bias=False)
        self.attn = Attention(n_embd, n_head)
        self.ln_2 = nn.LayerNorm(n_embd, eps=1e-5, bias=False)
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=False)
        self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.c_proj(F.gelu(self.c_fc(self.ln_2(x))))  # exact (erf) GELU


class GPT(nn.Module):
    def __init__(self, vocab: int, block: int, n_layer: int, n_head: int, n_embd: int, init: str) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, n_embd)
        self.wpe = nn.Embedding(block, n_embd)
        self.h = nn.ModuleList(Block(n_embd, n_head) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd, eps=1e-5, bias=False)
        if init == "nanogpt":
            for m in self.modules():
                if isinstance(m, (nn.Linear, nn.Embedding)):
                    nn.init.normal_(m.weight, 0.0, 0.02)
            for name, p in self.named_parameters():
                if name.endswith("c_proj.weight"):
                    nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * n_layer))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1])
        x = self.wte(idx) + self.wpe(pos)
        for blk in self.h:
            x = blk(x)
        return self.ln_f(x) @ self.wte.weight.T  # the output tied to the token embedding


def lr_at(it: int, lr: float, min_lr: float, warmup: int, decay_iters: int) -> float:
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    if it > decay_iters:
        return min_lr
    ratio = (it - warmup) / (decay_iters - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


def load(path: str) -> tuple[np.ndarray, np.ndarray, int]:
    text = Path(path).read_text(encoding="utf-8")
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    ids = np.fromiter((index[c] for c in text), dtype=np.int64, count=len(text))
    cut = len(ids) - round(len(ids) * 0.1)  # netdsl's split: the last round(10%) held out
    return ids[:cut], ids[cut:], len(chars)


@torch.no_grad()
def whole_split_loss(model: nn.Module, ids: np.ndarray, seq: int, batch: int = 64) -> float:
    """Summed NLL over consecutive windows of `seq` from the split's start, divided by the target count."""
    n = (len(ids) - 1) // seq
    starts = np.arange(n) * seq
    total, count = 0.0, 0
    model.eval()
    for i in range(0, n, batch):
        grid = starts[i:i + batch, None] + np.arange(seq)[None, :]
        x, y = torch.from_numpy(ids[grid]), torch.from_numpy(ids[grid + 1])
        logits = model(x).double()
        total += float(F.cross_entropy(logits.view(-1, logits.shape[-1]), y.view(-1), reduction="sum"))
        count += y.numel()
    model.train()
    return total / count


class EpochBatches:
    """netdsl's Batcher for text windows: per epoch a phase in [0, seq) and a permutation of the windows."""

    def __init__(self, ids: np.ndarray, seq: int, batch: int, seed: int) -> None:
        self.ids, self.seq, self.batch, self.seed = ids, seq, batch, seed
        self.n = (len(ids) - 1 - (seq - 1)) // seq
        self.spe = math.ceil(self.n / batch) - (1 if self.n % batch == 1 else 0)
        self.epoch = -1

    def get(self, step: int) -> np.ndarray:
        epoch, pos = divmod(step, self.spe)
        if epoch != self.epoch:
            rng = np.random.default_rng([self.seed, 1, epoch])
            self.phase = int(rng.integers(self.seq))
            self.order = rng.permutation(self.n)
            self.epoch = epoch
        return self.order[pos * self.batch:(pos + 1) * self.batch] * self.seq + self.phase


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", help="tinyshakespeare.txt")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--sampling", choices=("random", "epochs"), default="random")
    ap.add_argument("--init", choices=("nanogpt", "torch"), default="nanogpt")
    ap.add_argument("--every", type=int, default=500, help="whole-split validation every N steps")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    block, batch, n_layer = 64, 12, 4
    train_ids, val_ids, vocab = load(a.data)
    model = GPT(vocab, block, n_layer, 4, 128, a.init)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.99), eps=1e-8)
    gen = torch.Generator().manual_seed(a.seed)
    epochs = EpochBatches(train_ids, block, batch, a.seed)
    history = []
    t0, c0 = time.perf_counter(), time.process_time()
    for it in range(a.steps):
        lr = lr_at(it, 1e-3, 1e-4, 100, a.steps)
        for g in opt.param_groups:
            g["lr"] = lr
        if a.sampling == "random":
            ix = torch.randint(len(train_ids) - block, (batch,), generator=gen).numpy()
        else:
            ix = epochs.get(it)
        grid = ix[:, None] + np.arange(block)[None, :]
        x, y = torch.from_numpy(train_ids[grid]), torch.from_numpy(train_ids[grid + 1])
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, vocab), y.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if (it + 1) % a.every == 0 or it + 1 == a.steps:
            v = whole_split_loss(model, val_ids, block)
            history.append({"step": it + 1, "train_loss": loss.item(), "val_loss": v,
                            "seconds": time.perf_counter() - t0})
            if not a.json:
                print(f"step {it + 1}: train {loss.item():.4f}, val (whole split) {v:.4f}, "
                      f"{time.perf_counter() - t0:.1f} s", flush=True)
    if a.json:
        print(json.dumps({"seed": a.seed, "sampling": a.sampling, "init": a.init, "history": history}))
    else:
        print(f"final whole-split validation loss {history[-1]['val_loss']:.4f} (seed {a.seed}, "
              f"sampling {a.sampling}, init {a.init}), {time.perf_counter() - t0:.1f} s wall, "
              f"{time.process_time() - c0:.1f} s CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
