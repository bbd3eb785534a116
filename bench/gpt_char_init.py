"""Write a checkpoint holding nanoGPT's initialisation of specs/gpt_char.net, for `netdsl train --init-from`.

netdsl initialises every layer as PyTorch does by default: embeddings N(0, 1), linear weights uniform
±1/√fan_in. nanoGPT (model.py, GPT._init_weights) draws every linear and embedding weight from N(0, 0.02), the
two residual projections of each block (attn.c_proj, mlp.c_proj) from N(0, 0.02/√(2·n_layer)), and layernorm
gains are 1. With the output tied to the token embedding, N(0, 1) embeddings make the first logits ~√n_embd
large (a first loss of ~80 instead of ln 65 ≈ 4.2), and the embeddings then dominate the residual stream.

    python bench/gpt_char_init.py OUT_DIR [--set k=v …] [--seed S]
    netdsl train specs/gpt_char.net --data 'text("…/tinyshakespeare.txt", seq=64)' --init-from OUT_DIR

Parameters are matched by name (wte.weight, wpe.weight, h.N.attn.{q,k,v,out}.weight, h.N.mlp.c_fc.weight,
h.N.mlp.c_proj.weight, …); `--init-from` copies every parameter of the checkpoint whose name and shape match.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
from netdsl.runtime import checkpoint as ckpt

import netdsl
from netdsl.cli import parse_set

SPEC = Path(__file__).resolve().parents[1] / "specs" / "gpt_char.net"


def nanogpt_init(net: netdsl.Net, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_layer = int(net.values["n_layer"])
    out: dict[str, np.ndarray] = {}
    for name, p in net.params.items():
        if name.endswith(("ln_1.weight", "ln_2.weight")) or name.startswith("ln_f."):
            a = np.ones(p.shape)
        elif name.endswith(("attn.out.weight", "mlp.c_proj.weight")):
            a = rng.normal(0.0, 0.02 / math.sqrt(2 * n_layer), p.shape)
        elif name.endswith(".weight"):
            a = rng.normal(0.0, 0.02, p.shape)
        else:  # biases (none with bias=false)
            a = np.zeros(p.shape)
        out[name] = a.astype(np.float32)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", help="directory to write the checkpoint into")
    ap.add_argument("--set", action="append", metavar="K=V", help="network parameters (vocab=65 by default)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    params = {"vocab": 65, **parse_set(args.set)}
    net = netdsl.load(SPEC, **params)
    arrays = {f"param/{k}": v for k, v in nanogpt_init(net, args.seed).items()}
    path = ckpt.save(args.out, 0, arrays, {"network": net.name, "spec_hash": net.spec_hash,
                                          "values": ckpt.encode_values(net.values),
                                          "param_shapes": {k: list(v.shape) for k, v in net.params.items()},
                                          "note": "nanoGPT's initialisation (bench/gpt_char_init.py)"})
    print(f"{path}: nanoGPT's initialisation of {net.name} ({sum(a.size for a in arrays.values()):,} parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
