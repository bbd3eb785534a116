"""Readers for the dataset formats of LANGUAGE.md §7. Each returns a `Dataset` (runtime/data.py).

Bad data — a missing file, a wrong magic number, a truncated file, labels out of range, an array of Python
objects — raises `SpecError` with a diagnostic that names the file and says what is wrong. Nothing here ever
unpickles: `.npz` files are read with `allow_pickle=False`.
"""

from __future__ import annotations

import gzip
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from netdsl.diagnostics import Diagnostic, SpecError

from .data import Dataset, Examples, Windows
from .words import build_vocab, cbow_pairs, tokenize


def bad(file: Any, what: str, hint: str | None = None) -> SpecError:
    """A data error naming its file: `<file>: what is wrong`."""
    return SpecError(Diagnostic(None, f"{file}: {what}", hint))


def _path(p: Any, what: str) -> Path:
    if not isinstance(p, (str, Path)):
        raise SpecError(Diagnostic(None, f"{what}: expected a path (a string), found {p!r}"))
    return Path(str(p)).expanduser()


def read_bytes(path: Path) -> bytes:
    """A file's bytes, gunzipped when its name ends in `.gz`."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise bad(path, "no such file") from None
    except IsADirectoryError:
        raise bad(path, "is a directory, expected a file") from None
    except OSError as exc:
        raise bad(path, f"cannot read: {exc.strerror or exc}") from None
    if path.suffix == ".gz":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise bad(path, f"is not a valid gzip file ({exc})") from None
    return raw


def read_text(path: Path) -> str:
    data = read_bytes(path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad(path, f"is not UTF-8 text (byte {exc.start} is {data[exc.start]:#04x})") from None


# ----------------------------------------------------------------------------- scikit-learn digits


def resize(images: np.ndarray, h: int, w: int, mode: str = "bilinear") -> np.ndarray:
    """Resize `[N, H, W]` images to `[N, h, w]`: bilinear (half-pixel centres, edges clamped) or nearest."""
    _, sh, sw = images.shape

    def weights(src: int, dst: int) -> np.ndarray:
        m = np.zeros((dst, src), dtype=np.float64)
        pos = (np.arange(dst) + 0.5) * src / dst - 0.5
        if mode == "nearest":
            idx = np.minimum(np.floor((np.arange(dst) + 0.5) * src / dst).astype(int), src - 1)
            m[np.arange(dst), idx] = 1.0
            return m
        pos = np.clip(pos, 0, src - 1)
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, src - 1)
        frac = pos - lo
        np.add.at(m, (np.arange(dst), lo), 1 - frac)
        np.add.at(m, (np.arange(dst), hi), frac)
        return m

    out = np.einsum("oh,nhw,pw->nop", weights(sh, h), images.astype(np.float64), weights(sw, w))
    return out.astype(np.float32)


def digits(size: Any = None, interpolation: str = "bilinear") -> Dataset:
    """scikit-learn's 1,797 handwritten 8×8 digits, scaled to [0, 1], as `[1, size, size]` images, in a fixed
    shuffled order.

    Without `size`, the images are resized to the network's input when it is bound (`[1, H, W]`).
    """
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 1):
        raise SpecError(Diagnostic(None, f"digits: size must be a positive whole number, found {size!r}"))
    from sklearn.datasets import load_digits

    d = load_digits()
    # The file groups the digits by writer, and its last tenth comes from writers seen nowhere else (an SVM
    # scores 94% there against 98% on a random tenth): serve them in one fixed shuffled order, the same for
    # every run, so that `val 0.1` (the last tenth) is a fair sample.
    order = np.random.default_rng(0).permutation(len(d.target))
    raw = (d.images[order] / 16.0).astype(np.float32)
    labels = d.target[order].astype(np.int64)
    name = f"digits(size={size})" if size is not None else "digits()"

    def fit(arr: np.ndarray, want: tuple[int, ...]) -> np.ndarray | None:
        if len(want) == 3 and want[0] == 1 and arr.shape[1:] == (1, 8, 8):
            return resize(arr[:, 0], want[1], want[2], interpolation)[:, None]
        return None

    images = resize(raw, size, size, interpolation)[:, None] if size is not None else raw[:, None]
    ds = Dataset(name, "digits", ["image", "label"], Examples([images, labels]), classes=10, image_field=0)
    if size is None:
        ds.adapt[0] = fit
    return ds


# ----------------------------------------------------------------------------- IDX (MNIST)

IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path, magic: int | None = None) -> np.ndarray:
    """An IDX file (gzipped or not): magic number, dimensions, big-endian data."""
    data = read_bytes(path)
    if len(data) < 4:
        raise bad(path, f"is too short for an IDX file ({len(data)} bytes)")
    found = struct.unpack(">I", data[:4])[0]
    code, ndim = data[2], data[3]
    if data[:2] != b"\0\0" or code not in IDX_TYPES or (magic is not None and found != magic):
        want = f", expected {magic:#010x} ({magic})" if magic is not None else ""
        kind = {0x803: "IDX image", 0x801: "IDX label"}.get(magic or 0, "IDX")
        raise bad(path, f"wrong magic number {found:#010x} ({found}){want}: not an {kind} file")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise bad(path, f"is truncated: the header needs {header} bytes, the file has {len(data)}")
    dims = struct.unpack(">" + "I" * ndim, data[4:header])
    dtype = np.dtype(IDX_TYPES[code])
    want_bytes = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    have = len(data) - header
    if have != want_bytes:
        what = "is truncated" if have < want_bytes else "has trailing bytes"
        raise bad(path, f"{what}: its header promises {' × '.join(map(str, dims))} values ({want_bytes:,} bytes), "
                  f"the file holds {have:,}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)


def _find(base: Path, stems: list[str]) -> Path | None:
    for stem in stems:
        for suffix in ("", ".gz"):
            p = base / (stem + suffix)
            if p.is_file():
                return p
    return None


def mnist(path: Any, split: Any = "train") -> Dataset:
    """MNIST IDX files in a directory: `{split}-images-idx3-ubyte[.gz]` and `{split}-labels-idx1-ubyte[.gz]`.

    Images are scaled to [0, 1]; when the network's input is `[1, 32, 32]`, the 28×28 digits are centred on a
    32×32 field, as LeCun et al. (1998) did for LeNet-5.
    """
    base = _path(path, "mnist")
    if split not in ("train", "t10k", "test"):
        raise SpecError(Diagnostic(None, f"mnist: split must be \"train\" or \"t10k\", found {split!r}"))
    split = "t10k" if split == "test" else split
    if base.is_file():
        base = base.parent
    if not base.is_dir():
        raise bad(base, "no such directory (mnist expects a directory of IDX files)")
    img = _find(base, [f"{split}-images-idx3-ubyte", f"{split}-images.idx3-ubyte"])
    lab = _find(base, [f"{split}-labels-idx1-ubyte", f"{split}-labels.idx1-ubyte"])
    if img is None or lab is None:
        missing = f"{split}-{'images-idx3' if img is None else 'labels-idx1'}-ubyte[.gz]"
        other = "t10k" if split == "train" else "train"
        hint = (f'this directory holds the {other} split: use mnist("{path}", split="{other}")'
                if _find(base, [f"{other}-images-idx3-ubyte", f"{other}-images.idx3-ubyte"]) else None)
        raise bad(base, f"no {missing} file", hint)
    images = read_idx(img, 0x803)
    labels = read_idx(lab, 0x801)
    if len(images) != len(labels):
        raise bad(lab, f"holds {len(labels):,} labels for {len(images):,} images in {img.name}")
    if labels.size and labels.max() > 9:
        i = int(np.argmax(labels > 9))
        raise bad(lab, f"label {int(labels[i])} of example {i} is out of range 0…9")
    images = np.ascontiguousarray(images[:, None])
    ds = Dataset(f'mnist("{path}", split="{split}")', str(img), ["image", "label"],
                 Examples([images, labels.astype(np.int64)], [1 / 255, None]), classes=10, image_field=0)
    ds.adapt[0] = _pad_to
    return ds


def _pad_to(arr: np.ndarray, want: tuple[int, ...]) -> np.ndarray | None:
    """Centre smaller images on a zero field of the input's size (28×28 MNIST → 32×32 for LeNet-5)."""
    have = arr.shape[1:]
    if len(want) != 3 or len(have) != 3 or want[0] != have[0]:
        return None
    dh, dw = want[1] - have[1], want[2] - have[2]
    if dh < 0 or dw < 0 or dh % 2 or dw % 2 or max(dh, dw) > 8:
        return None
    return np.pad(arr, ((0, 0), (0, 0), (dh // 2, dh // 2), (dw // 2, dw // 2)))


# ----------------------------------------------------------------------------- CIFAR-10 (binary version)


def cifar10(path: Any, split: Any = "train") -> Dataset:
    """CIFAR-10's binary version: `data_batch_1.bin` … `data_batch_5.bin` (train) or `test_batch.bin` (test).

    Each record is one label byte and 3,072 pixel bytes (the red, green and blue 32×32 planes).
    """
    base = _path(path, "cifar10")
    if split not in ("train", "test"):
        raise SpecError(Diagnostic(None, f"cifar10: split must be \"train\" or \"test\", found {split!r}"))
    if base.is_dir() and (base / "cifar-10-batches-bin").is_dir():
        base = base / "cifar-10-batches-bin"
    if base.is_file():
        files = [base]
    elif base.is_dir():
        pattern = "data_batch_*.bin" if split == "train" else "test_batch.bin"
        files = sorted(base.glob(pattern))
        if not files:
            raise bad(base, f"no {pattern} file (cifar10 expects the binary version's files)")
    else:
        raise bad(base, "no such file or directory")
    images, labels = [], []
    for f in files:
        data = read_bytes(f)
        if len(data) == 0 or len(data) % 3073:
            raise bad(f, f"is truncated or not a CIFAR-10 binary batch: {len(data):,} bytes is not a whole "
                      "number of 3,073-byte records")
        rec = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3073)
        lab = rec[:, 0]
        if lab.max() > 9:
            i = int(np.argmax(lab > 9))
            raise bad(f, f"label {int(lab[i])} of record {i} is out of range 0…9")
        labels.append(lab.astype(np.int64))
        images.append(rec[:, 1:].reshape(-1, 3, 32, 32))
    name = f'cifar10("{path}"' + (', split="test")' if split == "test" else ")")
    return Dataset(name, str(files[0] if len(files) == 1 else base), ["image", "label"],
                   Examples([np.concatenate(images), np.concatenate(labels)], [1 / 255, None]), classes=10,
                   image_field=0)


# ----------------------------------------------------------------------------- npz


def npz(path: Any, x: Any = "x", y: Any = "y") -> Dataset:
    """Arrays `x` (and `y`, when the file has it or it is named) from a `.npz` file, never unpickling."""
    p = _path(path, "npz")
    if not p.is_file():
        raise bad(p, "no such file" if not p.exists() else "is not a file")
    try:
        with np.load(p, allow_pickle=False) as f:
            keys = list(f.files)
            names = [x] + ([y] if (y in keys or y != "y") else [])
            for k in names:
                if k not in keys:
                    raise bad(p, f"has no array '{k}' (it holds: {', '.join(keys) or 'nothing'})")
            arrays = []
            for k in names:
                try:
                    arrays.append(np.asarray(f[k]))
                except ValueError:
                    raise bad(p, f"array '{k}' holds Python objects; only numeric arrays are read "
                              "(files are never unpickled)") from None
    except SpecError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as exc:
        raise bad(p, f"is not a readable .npz file ({exc})") from None
    for k, a in zip(names, arrays, strict=True):
        if a.dtype.kind not in "biuf":
            raise bad(p, f"array '{k}' has dtype {a.dtype}; only numbers are read")
        if a.ndim == 0:
            raise bad(p, f"array '{k}' is a scalar; expected one entry per example")
    if len(arrays) == 2 and len(arrays[0]) != len(arrays[1]):
        raise bad(p, f"'{names[0]}' has {len(arrays[0]):,} examples but '{names[1]}' has {len(arrays[1]):,}")
    classes = None
    y_arr = arrays[1] if len(arrays) == 2 else None
    if y_arr is not None and y_arr.dtype.kind in "iub" and y_arr.ndim == 1 and y_arr.size and y_arr.min() >= 0:
        classes = int(y_arr.max()) + 1
    fixed = [a.astype(np.float32) if a.dtype.kind == "f" else a.astype(np.int64) for a in arrays]
    image = 0 if fixed[0].ndim == 4 and fixed[0].dtype == np.float32 else None
    kw = ", ".join(f'{n}="{v}"' for n, v in (("x", x), ("y", y)) if v != n)
    return Dataset(f'npz("{path}"' + (f", {kw})" if kw else ")"), str(p), names, Examples(fixed), classes=classes,
                   image_field=image)


# ----------------------------------------------------------------------------- text and words


def text(path: Any, seq: Any = None, vocab: list[str] | None = None) -> Dataset:
    """Character-level next-token windows `(ids[t:t+T], ids[t+1:t+T+1])`; vocabulary = the sorted characters.

    `vocab` (from a checkpoint) fixes the vocabulary: characters outside it are an error.
    """
    p = _path(path, "text")
    content = read_text(p)
    if not content:
        raise bad(p, "is empty")
    if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool) or seq < 1):
        raise SpecError(Diagnostic(None, f"text: seq must be a positive whole number, found {seq!r}"))
    chars = sorted(set(content)) if vocab is None else list(vocab)
    index = {c: i for i, c in enumerate(chars)}
    unknown = sorted(set(content) - set(index))
    if unknown:
        shown = ", ".join(repr(c) for c in unknown[:8])
        raise bad(p, f"has characters outside the model's vocabulary: {shown}"
                  + (f" and {len(unknown) - 8} more" if len(unknown) > 8 else ""))
    ids = np.fromiter((index[c] for c in content), dtype=np.int64, count=len(content))
    name = f'text("{path}"' + (f", seq={seq})" if seq is not None else ")")
    return Dataset(name, str(p), ["tokens", "targets"], Windows(ids, seq or 0), vocab=len(chars), tokens=chars)


def words(path: Any, window: Any = 2, vocab: list[str] | None = None) -> Dataset:
    """CBOW pairs: context ids `int[2·window]` (lower-cased words, punctuation as tokens) → the centre word's id."""
    p = _path(path, "words")
    if not isinstance(window, int) or isinstance(window, bool) or window < 1:
        raise SpecError(Diagnostic(None, f"words: window must be a positive whole number, found {window!r}"))
    toks = tokenize(read_text(p))
    if len(toks) < 2 * window + 1:
        raise bad(p, f"has {len(toks)} tokens: too few for a window of {window} on each side")
    words_ = build_vocab(toks) if vocab is None else list(vocab)
    index = {w: i for i, w in enumerate(words_)}
    unknown = [t for t in dict.fromkeys(toks) if t not in index]
    if unknown:
        raise bad(p, f"has words outside the model's vocabulary: {', '.join(map(repr, unknown[:8]))}")
    ids = np.array([index[t] for t in toks], dtype=np.int64)
    ctx, centre = cbow_pairs(ids, window)
    return Dataset(f'words("{path}", window={window})', str(p), ["context", "centre"], Examples([ctx, centre]),
                   classes=len(words_), vocab=len(words_), tokens=words_)


# ----------------------------------------------------------------------------- synthetic sequences


def sequences(task: Any = "reverse", length: Any = 8, vocab: Any = 20, count: Any = 10000) -> Dataset:
    """Synthetic seq2seq pairs over symbols 1…vocab-1 (0 is the start token): reverse, copy or sort.

    Fields `(src, tgt_in, tgt)`: `tgt_in` is `tgt` shifted right behind the start token (teacher forcing); a
    network with two inputs gets `(src, tgt)`. The examples are the same for every run (seed 0).
    """
    tasks: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "reverse": lambda s: s[:, ::-1], "copy": lambda s: s, "sort": lambda s: np.sort(s, axis=1)}
    if task not in tasks:
        raise SpecError(Diagnostic(None, f"sequences: unknown task {task!r}", "tasks: reverse, copy, sort"))
    for k, v, lo in (("length", length, 1), ("vocab", vocab, 3), ("count", count, 1)):
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            raise SpecError(Diagnostic(None, f"sequences: {k} must be a whole number ≥ {lo}, found {v!r}"))
    rng = np.random.default_rng(0)
    src = rng.integers(1, vocab, size=(count, length), dtype=np.int64)
    tgt = np.ascontiguousarray(tasks[task](src))
    tgt_in = np.concatenate([np.zeros((count, 1), np.int64), tgt[:, :-1]], axis=1)
    name = f'sequences(task="{task}", length={length}, vocab={vocab})'
    ds = Dataset(name, name, ["src", "tgt_in", "tgt"], Examples([src, tgt_in, tgt]), classes=vocab, vocab=vocab,
                 tokens=["<s>"] + [str(i) for i in range(1, vocab)])
    ds.optional = {"tgt_in"}
    return ds


LOADERS: dict[str, Callable[..., Dataset]] = {
    "digits": digits, "mnist": mnist, "cifar10": cifar10, "npz": npz, "text": text, "words": words,
    "sequences": sequences,
}
