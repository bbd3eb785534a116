"""Datasets, train/validation splits, binding fields to a network's inputs, and the seeded batcher.

A `Dataset` is a list of named fields over examples: `Examples` (arrays, example axis first) or `Windows` (a
token stream cut into next-token windows). `open_dataset` reads a dataset expression (`digits(size=32)`,
`npz("d.npz", x="a")`, or a bare path whose format is recognised); `split` holds out the validation part;
`bind` checks the fields against the network's inputs (shapes, integer ids, label ranges) and `Batcher` serves
shuffled batches as a pure function of (seed, epoch, position), so a resumed run sees exactly the same batches;
with `sampling random` each batch is drawn on its own as a pure function of (seed, step): for text, `batch`
windows at uniformly random offsets of the training stream (nanoGPT's get_batch), otherwise examples drawn
uniformly with replacement.

Splits: `val 0.1` holds out the *last* 10% of the examples in file order (for text, the last 10% of the
characters), so "first 8,000 for training, last 2,000 held out" is `val 0.2` on 10,000 examples; `val 0`
holds out nothing; `val "other.npz"` reads the held-out part from another file in the training data's format.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from netdsl.diagnostics import Diagnostic, SpecError
from netdsl.recipe import DATASETS, CallSpec, parse_call


@dataclass
class Examples:
    """Fields as arrays with the example axis first; `scales[i]` turns stored bytes into floats (1/255)."""

    arrays: list[np.ndarray]
    scales: list[float | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.scales = list(self.scales) + [None] * (len(self.arrays) - len(self.scales))

    def __len__(self) -> int:
        return len(self.arrays[0]) if self.arrays else 0

    def shape(self, i: int) -> tuple[int, ...]:
        return tuple(self.arrays[i].shape[1:])

    def is_int(self, i: int) -> bool:
        return self.arrays[i].dtype.kind in "iub" and self.scales[i] is None

    def take(self, idx: np.ndarray, phase: int = 0) -> list[np.ndarray]:
        out = []
        for a, s in zip(self.arrays, self.scales, strict=True):
            v = a[idx]
            if s is not None:
                v = v.astype(np.float32) * np.float32(s)
            out.append(v)
        return out

    def part(self, start: int, stop: int) -> Examples:
        return Examples([a[start:stop] for a in self.arrays], self.scales)

    def values(self, i: int) -> np.ndarray:
        return self.arrays[i]


@dataclass
class Windows:
    """A token stream served as windows `(ids[t:t+T], ids[t+1:t+T+1])` at stride T.

    Training windows start at a phase (0…T-1) drawn per epoch, so every offset is seen across epochs.
    """

    stream: np.ndarray
    seq: int
    random_phase: bool = True

    def __len__(self) -> int:
        if self.seq < 1:
            return 0
        extra = self.seq - 1 if self.random_phase else 0
        return max(0, (len(self.stream) - 1 - extra) // self.seq)

    def shape(self, i: int) -> tuple[int, ...]:
        return (self.seq,)

    def is_int(self, i: int) -> bool:
        return True

    def take(self, idx: np.ndarray, phase: int = 0) -> list[np.ndarray]:
        starts = np.asarray(idx, dtype=np.int64) * self.seq + phase
        grid = starts[:, None] + np.arange(self.seq)[None, :]
        return [self.stream[grid], self.stream[grid + 1]]

    def take_at(self, starts: np.ndarray) -> list[np.ndarray]:
        """The windows starting at these positions of the stream (any offset, not only multiples of seq)."""
        grid = np.asarray(starts, dtype=np.int64)[:, None] + np.arange(self.seq)[None, :]
        return [self.stream[grid], self.stream[grid + 1]]

    def part(self, start: int, stop: int) -> Windows:
        raise NotImplementedError

    def values(self, i: int) -> np.ndarray:
        return self.stream


@dataclass
class Dataset:
    """A dataset: named fields, what it came from (for messages) and what it knows (classes, vocabulary)."""

    name: str  # the expression, e.g. digits(size=32)
    source: str  # the file or directory it was read from
    fields: list[str]
    data: Examples | Windows
    classes: int | None = None
    vocab: int | None = None
    tokens: list[str] | None = None  # characters (text) or words (words), id = position
    image_field: int | None = None  # the field that image augmentation acts on
    optional: set[str] = field(default_factory=set)  # fields dropped when the network has fewer inputs
    adapt: dict[int, Callable[[np.ndarray, tuple[int, ...]], np.ndarray | None]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.data)


# ----------------------------------------------------------------------------- dataset expressions

_CALL = re.compile(r"^\s*([A-Za-z_]\w*)\s*(\(.*\))?\s*$", re.DOTALL)


def parse_data(spec: str | CallSpec) -> CallSpec:
    """`digits(size=32)`, `mnist("~/data/mnist")` or a bare path (format recognised from the files)."""
    if isinstance(spec, CallSpec):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise SpecError(Diagnostic(None, f"data: expected a dataset expression or a path, found {spec!r}"))
    m = _CALL.match(spec)
    if m and not Path(spec).expanduser().exists() and (m.group(2) or m.group(1) in DATASETS):
        if "'" in spec and '"' not in spec:  # npz('d.npz') from a shell: the spec language quotes with "
            spec = spec.replace("'", '"')
        return parse_call(spec, "dataset", DATASETS)
    return guess(spec)


def guess(path: str) -> CallSpec:
    """The dataset call for a bare path: an MNIST or CIFAR-10 directory, a `.npz` file or a text file."""
    p = Path(path).expanduser()
    if p.is_dir():
        names = [q.name for q in p.iterdir()]
        if any("idx3-ubyte" in n for n in names):
            split = "train" if any(n.startswith("train-images") for n in names) else "t10k"
            return CallSpec("mnist", (), {"path": path, "split": split})
        if any(n.startswith("data_batch_") or n == "test_batch.bin" for n in names) or "cifar-10-batches-bin" in names:
            return CallSpec("cifar10", (), {"path": path})
        raise SpecError(Diagnostic(None, f"{path}: cannot tell the data format of this directory",
                                   "expected MNIST IDX files or CIFAR-10 binary batches; or name the dataset, "
                                   "e.g. --data 'npz(\"d.npz\")'"))
    if not p.exists():
        m = _CALL.match(path)
        hint = ("datasets: " + ", ".join(DATASETS)) if m and "(" not in path and "/" not in path else None
        raise SpecError(Diagnostic(None, f"{path}: no such file or directory", hint))
    if p.suffix == ".npz":
        return CallSpec("npz", (), {"path": path})
    if "idx3-ubyte" in p.name:
        return CallSpec("mnist", (), {"path": str(p.parent), "split": p.name.split("-")[0]})
    if p.suffix == ".bin":
        return CallSpec("cifar10", (), {"path": path})
    return CallSpec("text", (), {"path": path})


def resolve_path(call: CallSpec, base: Path | None) -> CallSpec:
    """A recipe's relative path: as given when it exists from here, else relative to the spec's directory."""
    path = call.kwargs.get("path")
    if base is None or not isinstance(path, str):
        return call
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists() or not (base / p).exists():
        return call
    return replace(call, kwargs={**call.kwargs, "path": str(base / p)})


def open_dataset(call: CallSpec, tokens: list[str] | None = None) -> Dataset:
    """Read the dataset a call names. `tokens` fixes a text or words vocabulary (from a checkpoint)."""
    from .loaders import LOADERS

    kwargs = dict(call.kwargs)
    if tokens is not None and call.name in ("text", "words"):
        kwargs["vocab"] = tokens
    try:
        return LOADERS[call.name](**kwargs)
    except TypeError as exc:
        raise SpecError(Diagnostic(call.span, f"{call.name}: {exc}")) from None


def split(ds: Dataset, val: float | str | None, tokens: list[str] | None = None,
          base: Path | None = None) -> tuple[Dataset, Dataset | None]:
    """(train, validation): the last fraction held out, none (`0`), or another file of the same format."""
    if val is None or (isinstance(val, (int, float)) and val == 0):
        return ds, None
    if isinstance(val, str):
        m = _CALL.match(val)
        if m and m.group(1) in DATASETS and m.group(2):
            call = parse_call(val, "dataset", DATASETS)
        else:
            call = CallSpec(_call_name(ds), (), {**_call_kwargs(ds), "path": val})
        vds = open_dataset(resolve_path(call, base), tokens if tokens is not None else ds.tokens)
        if isinstance(vds.data, Windows) and isinstance(ds.data, Windows):
            vds.data = Windows(vds.data.stream, ds.data.seq, random_phase=False)
        vds.adapt, vds.optional = ds.adapt, ds.optional
        return ds, vds
    if not 0 < val < 1:
        raise SpecError(Diagnostic(None, f"val must be a fraction in [0, 1) or a file, found {val!r}"))
    if isinstance(ds.data, Windows):
        n = len(ds.data.stream)
        cut = n - round(n * val)
        train = replace(ds, data=Windows(ds.data.stream[:cut], ds.data.seq))
        held = replace(ds, data=Windows(ds.data.stream[cut:], ds.data.seq, random_phase=False))
        return train, held
    n = len(ds)
    cut = n - round(n * val)
    if cut < 1 or cut >= n:
        raise SpecError(Diagnostic(None, f"{ds.source}: val {val} of {n} examples leaves "
                                   f"{'no training' if cut < 1 else 'no validation'} examples"))
    return replace(ds, data=ds.data.part(0, cut)), replace(ds, data=ds.data.part(cut, n))


def _call_name(ds: Dataset) -> str:
    return ds.name.split("(", 1)[0]


def _call_kwargs(ds: Dataset) -> dict[str, Any]:
    try:
        call = parse_call(ds.name, "dataset", DATASETS)
    except SpecError:
        return {}
    return {k: v for k, v in call.kwargs.items() if k != "path"}


# ----------------------------------------------------------------------------- binding to a network


@dataclass
class Bound:
    """A dataset bound to a network: which input each field feeds, ready to batch."""

    ds: Dataset
    inputs: list[str | None]  # per field: the input it feeds (None: unused)
    floats: list[bool]  # per field: fed as float32 (else int64)

    def __len__(self) -> int:
        return len(self.ds)

    def feeds(self, idx: np.ndarray, phase: int = 0, starts: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Examples `idx` (windows at stride seq from `phase`), or for text the windows at offsets `starts`."""
        data = self.ds.data
        arrays = data.take_at(starts) if starts is not None and isinstance(data, Windows) else data.take(idx, phase)
        out: dict[str, np.ndarray] = {}
        for name, fl, arr in zip(self.inputs, self.floats, arrays, strict=True):
            if name is not None:
                out[name] = np.ascontiguousarray(arr, dtype=np.float32 if fl else np.int64)
        return out


def input_types(net: Any) -> dict[str, Any]:
    return {name: net.ir.node(nid).outputs[0] for name, nid in net.ir.inputs.items()}


def bind(ds: Dataset, net: Any, names: list[str] | None = None) -> Bound:
    """Bind fields to inputs (in order, or by `as (…)` names; `_` skips a field) and check the data fits."""
    types = input_types(net)
    fields = list(ds.fields)
    if names:
        if len(names) != len(fields) and len(names) == len(fields) - len(ds.optional):
            fields = [f for f in fields if f not in ds.optional]
        if len(names) != len(fields):
            raise SpecError(Diagnostic(None, f"{ds.name} gives {len(fields)} fields ({', '.join(fields)}) but "
                                       f"'as' names {len(names)}"))
        for n in names:
            if n != "_" and n not in types:
                raise SpecError(Diagnostic(None, f"'as ({', '.join(names)})': network {net.name} has no input '{n}'",
                                           f"its inputs: {', '.join(types)}"))
        targets: list[str | None] = [None if n == "_" else n for n in names]
    else:
        if len(fields) > len(types) and len(fields) - len(ds.optional) == len(types):
            fields = [f for f in fields if f not in ds.optional]
        if len(fields) != len(types):
            raise SpecError(Diagnostic(None, f"{ds.name} gives {len(fields)} fields ({', '.join(fields)}) but "
                                       f"network {net.name} has {len(types)} inputs ({', '.join(types)})",
                                       "bind them by name: data … as (" + ", ".join(list(types)[: len(fields)])
                                       + ")" + ("; '_' skips a field" if len(fields) > len(types) else "")))
        targets = list(types)
    unbound = [n for n in types if n not in targets]
    if unbound:
        raise SpecError(Diagnostic(None, f"input '{unbound[0]}' of {net.name} gets no field from {ds.name}"))
    # drop the optional fields that were not chosen
    keep = [ds.fields.index(f) for f in fields]
    if len(keep) != len(ds.fields):
        data = ds.data
        if isinstance(data, Examples):
            data = Examples([data.arrays[i] for i in keep], [data.scales[i] for i in keep])
        ds = replace(ds, fields=fields, data=data,
                     image_field=keep.index(ds.image_field) if ds.image_field in keep else None,
                     adapt={keep.index(i): f for i, f in ds.adapt.items() if i in keep})
    floats = []
    for i, (fname, target) in enumerate(zip(fields, targets, strict=True)):
        if target is None:
            floats.append(False)
            continue
        t = types[target]
        if isinstance(ds.data, Windows) and ds.data.seq == 0:
            ds.data.seq = t.shape[0] if t.is_int and t.rank == 1 else 0
        have = ds.data.shape(i)
        if have != t.shape and i in ds.adapt and isinstance(ds.data, Examples):
            fixed = ds.adapt[i](ds.data.arrays[i], t.shape)
            if fixed is not None:
                ds.data.arrays[i] = fixed
                have = ds.data.shape(i)
        if have != t.shape:
            hint = _shape_hint(ds, t.shape)
            raise SpecError(Diagnostic(None, f"{ds.source}: field '{fname}' has examples of shape "
                                       f"[{', '.join(map(str, have))}], but input '{target}' of {net.name} "
                                       f"expects {t.spec()}", hint))
        if t.is_int and not ds.data.is_int(i):
            raise SpecError(Diagnostic(None, f"{ds.source}: field '{fname}' holds floats, but input '{target}' "
                                       f"of {net.name} takes integer ids ({t.spec()})"))
        if not t.is_int and isinstance(ds.data, Examples) and ds.data.arrays[i].dtype.kind == "f":
            finite = np.isfinite(ds.data.arrays[i].reshape(len(ds.data), -1)).all(axis=1)
            if not finite.all():
                raise SpecError(Diagnostic(None, f"{ds.source}: field '{fname}' holds NaN or infinite values "
                                           f"(first in example {int(np.argmin(finite))})"))
        floats.append(not t.is_int)
    bound = Bound(ds, targets, floats)
    check_ranges(bound, net)
    return bound


def _shape_hint(ds: Dataset, want: tuple[int, ...]) -> str | None:
    if ds.name.startswith("digits") and len(want) == 3 and want[0] == 1 and want[1] == want[2]:
        return f"use digits(size={want[1]})"
    if ds.name.startswith("text") and len(want) == 1:
        return f"use seq={want[0]} (the input's length)"
    return None


def id_limits(net: Any) -> dict[str, tuple[int, int, str]]:
    """Input name → (exclusive upper bound, ignored value, what) for labels and token ids."""
    inputs = {nid: name for name, nid in net.ir.inputs.items()}
    out: dict[str, tuple[int, int, str]] = {}
    for n in net.ir:
        if n.op == "cross_entropy" and n.inputs[1].node in inputs:
            v = net.ir.type_of(n.inputs[0]).shape[-1]
            out[inputs[n.inputs[1].node]] = (v, int(n.attrs.get("ignore", -1)), f"the network's {v} classes")
        elif n.op == "embedding" and n.inputs[0].node in inputs:
            v = int(n.attrs["vocab"])
            out[inputs[n.inputs[0].node]] = (v, -(2**62), f"embedding '{n.name}' of {v} tokens")
    return out


def check_ranges(bound: Bound, net: Any) -> None:
    limits = id_limits(net)
    for i, target in enumerate(bound.inputs):
        if target not in limits or bound.floats[i]:
            continue
        hi, ignore, what = limits[target]
        vals = bound.ds.data.values(i)
        if vals.size == 0:
            continue
        ok = ((vals >= 0) & (vals < hi)) | (vals == ignore)
        if not ok.all():
            v = int(vals[~ok].flat[0])
            raise SpecError(Diagnostic(None, f"{bound.ds.source}: {'label' if 'classes' in what else 'token id'} {v} "
                                       f"in field '{bound.ds.fields[i]}' is out of range for {what}",
                                       "set the network's classes (or vocab) to match the data: "
                                       "--set classes=N, or classes=auto in the spec"))


# ----------------------------------------------------------------------------- batching


class Batcher:
    """Shuffled, seeded batches: epoch e's order is a pure function of (seed, e); nothing else to save."""

    def __init__(self, bound: Bound, batch: int, seed: int, shuffle: bool = True, augment: Any = None,
                 sampling: str = "shuffle") -> None:
        self.bound = bound
        self.sampling = sampling
        self.batch = batch
        self.seed = seed
        self.shuffle = shuffle
        self.augment = augment
        n = len(bound)
        steps = math.ceil(n / batch)
        if steps > 1 and n % batch == 1:
            steps -= 1  # never a batch of one (batchnorm cannot train on it): its example waits a turn
        self.steps_per_epoch = steps
        self._epoch = -1
        self._order: np.ndarray = np.arange(n)
        self._phase = 0

    def _prepare(self, epoch: int) -> None:
        if epoch == self._epoch:
            return
        rng = np.random.default_rng([self.seed, 1, epoch])
        n = len(self.bound)
        windows = isinstance(self.bound.ds.data, Windows)
        self._phase = int(rng.integers(self.bound.ds.data.seq)) if windows and self.shuffle else 0
        self._order = rng.permutation(n) if self.shuffle else np.arange(n)
        self._epoch = epoch

    def get(self, epoch: int, pos: int, step: int) -> dict[str, np.ndarray]:
        """Batch `pos` of epoch `epoch` (the run's global step `step` seeds its augmentation); with sampling
        random, a batch drawn from (seed, step) alone."""
        if self.sampling == "random":
            rng = np.random.default_rng([self.seed, 3, step])
            data = self.bound.ds.data
            if isinstance(data, Windows):  # any start whose window and shifted targets fit: [0, len - seq)
                feeds = self.bound.feeds(np.arange(0), starts=rng.integers(0, len(data.stream) - data.seq,
                                                                            self.batch))
            else:
                feeds = self.bound.feeds(rng.integers(0, len(self.bound), self.batch))
        else:
            self._prepare(epoch)
            idx = self._order[pos * self.batch: (pos + 1) * self.batch]
            feeds = self.bound.feeds(idx, self._phase)
        if self.augment is not None:
            self.augment.train(feeds, np.random.default_rng([self.seed, 2, step]))
        return feeds

    def eval_batches(self) -> Any:
        """Every example once, in order, in batches (for evaluation)."""
        n = len(self.bound)
        for start in range(0, n, self.batch):
            feeds = self.bound.feeds(np.arange(start, min(n, start + self.batch)))
            if self.augment is not None:
                self.augment.eval(feeds)
            yield feeds
