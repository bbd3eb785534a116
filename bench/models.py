"""The benchmark models: each a netdsl spec, random feeds, and the same model in PyTorch (built lazily)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

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


def _lenet_feeds(rng: np.random.Generator, batch: int = 64) -> dict[str, np.ndarray]:
    return {"image": rng.standard_normal((batch, 1, 32, 32)).astype(np.float32),
            "label": rng.integers(0, 10, size=batch).astype(np.int64)}


def _lenet_torch(torch: Any) -> tuple[Any, Any, Any]:
    nn = torch.nn
    model = nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(400, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, 10))
    f = _lenet_feeds(np.random.default_rng(0))
    x, y = torch.from_numpy(f["image"]), torch.from_numpy(f["label"])
    return model, (x, y), lambda m, d: nn.functional.cross_entropy(m(d[0]), d[1])


MODELS: dict[str, dict[str, Any]] = {
    "lenet5": {"spec": LENET5, "batch": 64, "feeds": _lenet_feeds, "torch": _lenet_torch},
}


# ----------------------------------------------------------------------------- char-level LSTM
CHAR_LSTM = """
network CharLSTM(vocab=65) {
    input ids: int[64]
    input next: int[64]
    logits = ids -> embedding(vocab, 64) -> lstm(256) -> dense(vocab)
    output logits
    loss cross_entropy(logits, next)
}
"""


def _tokens(rng: np.random.Generator, batch: int, t: int, vocab: int = 65) -> dict[str, np.ndarray]:
    ids = rng.integers(0, vocab, size=(batch, t + 1)).astype(np.int64)
    return {"ids": ids[:, :-1].copy(), "next": ids[:, 1:].copy()}


def _char_lstm_torch(torch: Any) -> tuple[Any, Any, Any]:
    nn = torch.nn

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(65, 64)
            self.lstm = nn.LSTM(64, 256, batch_first=True)
            self.out = nn.Linear(256, 65)

        def forward(self, ids: Any) -> Any:
            return self.out(self.lstm(self.emb(ids))[0])

    f = _tokens(np.random.default_rng(0), 32, 64)
    x, y = torch.from_numpy(f["ids"]), torch.from_numpy(f["next"])
    return Model(), (x, y), lambda m, d: nn.functional.cross_entropy(m(d[0]).reshape(-1, 65), d[1].reshape(-1))


# ----------------------------------------------------------------------------- tiny GPT (nanoGPT's CPU config)
TINY_GPT = """
block Block(d, heads)(x) {
    x = x + (x -> layernorm(bias=false) -> attention(heads, causal=true))
    return x + (x -> layernorm(bias=false) -> dense(4 * d) -> gelu -> dense(d))
}

network GPT(vocab=65, d=128, heads=4, layers=4, T=64) {
    input ids: int[T]
    input next: int[T]
    let emb = embedding(vocab, d)
    h = ids -> emb -> positional_embedding(T) -> repeat layers Block(d, heads) -> layernorm(bias=false)
    logits = h -> unembed(emb)
    output logits
    loss cross_entropy(logits, next)
}
"""


def _gpt_torch(torch: Any) -> tuple[Any, Any, Any]:
    nn = torch.nn
    d, heads, layers, block, vocab = 128, 4, 4, 64, 65

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln1 = nn.LayerNorm(d, bias=False)
            self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
            self.ln2 = nn.LayerNorm(d, bias=False)
            self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
            self.register_buffer("mask", torch.triu(torch.ones(block, block, dtype=torch.bool), 1))

        def forward(self, x: Any) -> Any:
            h = self.ln1(x)
            x = x + self.attn(h, h, h, attn_mask=self.mask, need_weights=False)[0]
            return x + self.mlp(self.ln2(x))

    class GPT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(vocab, d)
            self.pos = nn.Parameter(torch.randn(block, d))
            self.blocks = nn.Sequential(*[Block() for _ in range(layers)])
            self.ln = nn.LayerNorm(d, bias=False)

        def forward(self, ids: Any) -> Any:
            h = self.ln(self.blocks(self.emb(ids) + self.pos))
            return h @ self.emb.weight.T

    f = _tokens(np.random.default_rng(0), 12, 64)
    x, y = torch.from_numpy(f["ids"]), torch.from_numpy(f["next"])
    return GPT(), (x, y), lambda m, dd: nn.functional.cross_entropy(m(dd[0]).reshape(-1, vocab), dd[1].reshape(-1))


# ----------------------------------------------------------------------------- ResNet-18 for 32×32 inputs
RESNET18_CIFAR = (Path(__file__).resolve().parent.parent / "specs" / "resnet18_cifar.net").read_text()


def _image_feeds(rng: np.random.Generator, batch: int) -> dict[str, np.ndarray]:
    return {"image": rng.standard_normal((batch, 3, 32, 32)).astype(np.float32),
            "label": rng.integers(0, 10, size=batch).astype(np.int64)}


def _resnet_torch(torch: Any) -> tuple[Any, Any, Any]:
    nn = torch.nn

    class Basic(nn.Module):
        def __init__(self, cin: int, planes: int) -> None:
            super().__init__()
            stride = 1 if cin == planes else 2
            self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.down = (nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
                         if cin != planes else nn.Identity())

        def forward(self, x: Any) -> Any:
            y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
            return torch.relu(y + self.down(x))

    layers: list[Any] = [nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU()]
    cin = 64
    for planes in (64, 128, 256, 512):
        layers += [Basic(cin, planes), Basic(planes, planes)]
        cin = planes
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 10)]
    model = nn.Sequential(*layers)
    f = _image_feeds(np.random.default_rng(0), 32)
    x, y = torch.from_numpy(f["image"]), torch.from_numpy(f["label"])
    return model, (x, y), lambda m, d: nn.functional.cross_entropy(m(d[0]), d[1])


MODELS.update({
    "char_lstm": {"spec": CHAR_LSTM, "batch": 32, "feeds": lambda rng: _tokens(rng, 32, 64),
                  "torch": _char_lstm_torch},
    "tiny_gpt": {"spec": TINY_GPT, "batch": 12, "feeds": lambda rng: _tokens(rng, 12, 64), "torch": _gpt_torch},
    "resnet18_cifar": {"spec": RESNET18_CIFAR, "batch": 32, "feeds": lambda rng: _image_feeds(rng, 32),
                       "torch": _resnet_torch},
})
