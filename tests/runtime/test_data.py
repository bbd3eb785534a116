"""Datasets on tiny files made here: every format, splits, binding, batching, augmentation and bad data."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from netdsl.runtime.augment import Augment
from netdsl.runtime.data import Batcher, bind, open_dataset, parse_data, split
from netdsl.runtime.loaders import cifar10, digits, mnist, npz, resize, sequences, text, words

import netdsl
from netdsl import SpecError
from netdsl.recipe import CallSpec

from .conftest import write_idx

IMAGE_NET = """
network N(classes=10) {{
    input image: [{c}, {h}, {w}]
    input label: int[]
    logits = image -> flatten -> out: dense(classes)
    output logits
    loss cross_entropy(logits, label)
}}
"""
LM_NET = """
network LM(vocab=5, seq=4) {
    input tokens: int[seq]
    input targets: int[seq]
    logits = tokens -> embedding(vocab, 3) -> dense(vocab)
    output logits
    loss cross_entropy(logits, targets)
}
"""


def image_net(c: int = 1, h: int = 32, w: int = 32, classes: int = 10) -> netdsl.Net:
    return netdsl.loads(IMAGE_NET.format(c=c, h=h, w=w), classes=classes)


def err(excinfo: pytest.ExceptionInfo[SpecError]) -> str:
    return str(excinfo.value)


# ----------------------------------------------------------------------------- digits


def test_digits_resized_and_scaled() -> None:
    ds = digits(size=32)
    assert ds.fields == ["image", "label"] and ds.classes == 10 and len(ds) == 1797
    x = ds.data.arrays[0]
    assert x.shape == (1797, 1, 32, 32) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.9
    bound = bind(ds, image_net())
    assert bound.inputs == ["image", "label"]


def test_digits_without_size_takes_the_input_size() -> None:
    bound = bind(digits(), image_net(h=16, w=16))
    assert bound.ds.data.arrays[0].shape == (1797, 1, 16, 16)


def test_digits_wrong_size_is_an_error_with_a_hint() -> None:
    with pytest.raises(SpecError) as e:
        bind(digits(size=28), image_net())
    assert "field 'image' has examples of shape [1, 28, 28], but input 'image' of N expects [1, 32, 32]" in err(e)
    assert "digits(size=32)" in err(e)


def test_resize_bilinear_and_nearest() -> None:
    flat = np.full((1, 8, 8), 0.25, dtype=np.float32)
    assert np.allclose(resize(flat, 32, 32), 0.25)
    img = np.arange(4, dtype=np.float32).reshape(1, 2, 2)
    near = resize(img, 4, 4, "nearest")[0]
    assert near.tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]
    bil = resize(img, 4, 4)[0]
    assert bil[0, 0] == 0 and bil[3, 3] == 3 and np.isclose(bil[0, 1], 0.25)  # half-pixel centres, edges clamped


# ----------------------------------------------------------------------------- MNIST (IDX)


def make_mnist(d: Path, split: str = "train", n: int = 5, gz: bool = True) -> tuple[np.ndarray, np.ndarray]:
    d.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 28, 28)).astype(np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    ext = ".gz" if gz else ""
    write_idx(d / f"{split}-images-idx3-ubyte{ext}", images)
    write_idx(d / f"{split}-labels-idx1-ubyte{ext}", labels)
    return images, labels


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_reads_idx_files(tmp_path: Path, gz: bool) -> None:
    images, labels = make_mnist(tmp_path, "t10k", gz=gz)
    ds = mnist(str(tmp_path), split="t10k")
    assert len(ds) == 5 and ds.classes == 10
    batch = ds.data.take(np.arange(5))
    assert np.allclose(batch[0][:, 0], images / 255.0) and batch[1].tolist() == labels.tolist()
    bound = bind(ds, image_net(h=28, w=28))
    assert bound.ds.data.arrays[0].shape == (5, 1, 28, 28)


def test_mnist_centred_on_32_by_32_for_lenet(tmp_path: Path) -> None:
    images, _ = make_mnist(tmp_path)
    bound = bind(mnist(str(tmp_path)), image_net())
    x = bound.feeds(np.arange(5))["image"]
    assert x.shape == (5, 1, 32, 32)
    assert np.allclose(x[:, 0, 2:30, 2:30], images / 255.0) and x[:, :, :2].max() == 0


def test_mnist_missing_split_names_the_file_and_hints_the_other(tmp_path: Path) -> None:
    make_mnist(tmp_path, "t10k")
    with pytest.raises(SpecError) as e:
        mnist(str(tmp_path))
    assert f"{tmp_path}: no train-images-idx3-ubyte[.gz] file" in err(e)
    assert 'split="t10k"' in err(e)


def test_mnist_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as e:
        mnist(str(tmp_path / "nowhere"))
    assert "nowhere: no such directory" in err(e)


def test_idx_wrong_magic_number(tmp_path: Path) -> None:
    make_mnist(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((5, 28, 28)), magic=0x801)  # a label magic
    with pytest.raises(SpecError) as e:
        mnist(str(tmp_path))
    assert "train-images-idx3-ubyte.gz: wrong magic number 0x00000801 (2049), expected 0x00000803 (2051)" in err(e)
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"PK\x03\x04" + bytes(100)))
    with pytest.raises(SpecError) as e:
        mnist(str(tmp_path))
    assert "wrong magic number 0x504b0304" in err(e)


def test_idx_truncated(tmp_path: Path) -> None:
    make_mnist(tmp_path, gz=False)
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(SpecError) as e:
        mnist(str(tmp_path))
    assert f"{p}: is truncated: its header promises 5 × 28 × 28 values (3,920 bytes), the file holds 3,820" in err(e)


def test_idx_not_gzip(tmp_path: Path) -> None:
    make_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(SpecError) as e:
        mnist(str(tmp_path))
    assert "train-labels-idx1-ubyte.gz: is not a valid gzip file" in err(e)


def test_idx_label_out_of_range_and_count_mismatch(tmp_path: Path) -> None:
    make_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([1, 2, 12, 3, 4]))
    with pytest.raises(SpecError) as e:
        mnist(str(tmp_path))
    assert "train-labels-idx1-ubyte.gz: label 12 of example 2 is out of range 0…9" in err(e)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([1, 2, 3]))
    with pytest.raises(SpecError) as e:
        mnist(str(tmp_path))
    assert "holds 3 labels for 5 images" in err(e)


# ----------------------------------------------------------------------------- CIFAR-10 (binary)


def make_cifar(d: Path, name: str = "data_batch_1.bin", n: int = 4, label: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(1)
    rec = rng.integers(0, 256, size=(n, 3073)).astype(np.uint8)
    rec[:, 0] = np.arange(n) % 10 if label is None else label
    (d / name).write_bytes(rec.tobytes())
    return rec


def test_cifar10_binary_batches(tmp_path: Path) -> None:
    r1 = make_cifar(tmp_path, "data_batch_1.bin")
    r2 = make_cifar(tmp_path, "data_batch_2.bin", n=2)
    make_cifar(tmp_path, "test_batch.bin", n=3)
    ds = cifar10(str(tmp_path))
    assert len(ds) == 6 and ds.classes == 10
    x, y = ds.data.take(np.arange(6))
    assert x.shape == (6, 3, 32, 32) and np.allclose(x[0, 1].reshape(-1), r1[0, 1025:2049] / 255.0)
    assert y.tolist() == r1[:, 0].tolist() + r2[:, 0].tolist()
    assert len(cifar10(str(tmp_path), split="test")) == 3
    bind(ds, image_net(c=3))


def test_cifar10_bad_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as e:
        cifar10(str(tmp_path))
    assert f"{tmp_path}: no data_batch_*.bin file" in err(e)
    (tmp_path / "data_batch_1.bin").write_bytes(bytes(3073 * 2 + 5))
    with pytest.raises(SpecError) as e:
        cifar10(str(tmp_path))
    assert "data_batch_1.bin: is truncated or not a CIFAR-10 binary batch: 6,151 bytes" in err(e)
    make_cifar(tmp_path, label=11)
    with pytest.raises(SpecError) as e:
        cifar10(str(tmp_path))
    assert "data_batch_1.bin: label 11 of record 0 is out of range 0…9" in err(e)


# ----------------------------------------------------------------------------- npz


def test_npz_reads_named_arrays(tmp_path: Path) -> None:
    x = np.random.default_rng(0).random((6, 1, 8, 8))
    np.savez(tmp_path / "d.npz", a=x, b=np.arange(6) % 3)
    ds = npz(str(tmp_path / "d.npz"), x="a", y="b")
    assert ds.fields == ["a", "b"] and ds.classes == 3 and ds.data.arrays[0].dtype == np.float32
    bound = bind(ds, image_net(h=8, w=8, classes=3))
    assert bound.feeds(np.arange(2))["label"].dtype == np.int64


def test_npz_bad_files(tmp_path: Path) -> None:
    p = tmp_path / "d.npz"
    with pytest.raises(SpecError) as e:
        npz(str(p))
    assert f"{p}: no such file" in err(e)
    np.savez(p, x=np.zeros((3, 4)))
    with pytest.raises(SpecError) as e:
        npz(str(p), x="images")
    assert "has no array 'images' (it holds: x)" in err(e)
    np.savez(p, x=np.array([{"a": 1}, None], dtype=object), y=np.arange(2))
    with pytest.raises(SpecError) as e:
        npz(str(p))
    assert "array 'x' holds Python objects; only numeric arrays are read (files are never unpickled)" in err(e)
    p.write_bytes(b"this is not a zip file")
    with pytest.raises(SpecError) as e:
        npz(str(p))
    assert "is not a readable .npz file" in err(e)
    np.savez(p, x=np.zeros((3, 4)), y=np.arange(4))
    with pytest.raises(SpecError) as e:
        npz(str(p))
    assert "'x' has 3 examples but 'y' has 4" in err(e)


def test_labels_out_of_range_for_the_network(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 1, 8, 8)), y=np.array([0, 1, 7, 2]))
    with pytest.raises(SpecError) as e:
        bind(npz(str(tmp_path / "d.npz")), image_net(h=8, w=8, classes=5))
    assert f"{tmp_path / 'd.npz'}: label 7 in field 'y' is out of range for the network's 5 classes" in err(e)


def test_float_data_for_integer_input_and_field_count(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 1, 8, 8)), y=np.array([0.0, 1.0, 1.0, 0.0]))
    with pytest.raises(SpecError) as e:
        bind(npz(str(tmp_path / "d.npz")), image_net(h=8, w=8))
    assert "field 'y' holds floats, but input 'label' of N takes integer ids (int[])" in err(e)
    np.savez(tmp_path / "e.npz", x=np.zeros((4, 1, 8, 8)))
    with pytest.raises(SpecError) as e:
        bind(npz(str(tmp_path / "e.npz")), image_net(h=8, w=8))
    assert "gives 1 fields (x) but network N has 2 inputs (image, label)" in err(e)


def test_nan_in_float_data(tmp_path: Path) -> None:
    x = np.zeros((4, 1, 8, 8))
    x[2, 0, 3, 3] = np.nan
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(4))
    with pytest.raises(SpecError) as e:
        bind(npz(str(tmp_path / "d.npz")), image_net(h=8, w=8))
    assert "d.npz: field 'x' holds NaN or infinite values (first in example 2)" in err(e)


def test_as_names_bind_by_name_and_skip(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 1, 8, 8)), y=np.arange(4))
    ds = npz(str(tmp_path / "d.npz"))
    net = netdsl.loads("network A { input img: [1, 8, 8]\n output o = img -> flatten -> dense(2) }")
    bound = bind(ds, net, ["img", "_"])
    assert list(bound.feeds(np.arange(2))) == ["img"]
    with pytest.raises(SpecError) as e:
        bind(ds, net, ["image", "_"])
    assert "network A has no input 'image'" in err(e)


# ----------------------------------------------------------------------------- text, words, sequences


def test_text_windows_and_vocabulary(tmp_path: Path) -> None:
    p = tmp_path / "t.txt"
    p.write_text("abcabcabcabcabcabcabcabcabcabc", encoding="utf-8")  # 30 characters
    ds = text(str(p))
    assert ds.tokens == ["a", "b", "c"] and ds.vocab == 3
    net = netdsl.loads(LM_NET, vocab=3)
    bound = bind(ds, net)
    assert ds.data.seq == 4  # from the input int[4]
    f = bound.feeds(np.array([0, 1]), phase=1)
    assert f["tokens"].tolist() == [[1, 2, 0, 1], [2, 0, 1, 2]] and f["targets"].tolist() == [[2, 0, 1, 2], [0, 1, 2, 0]]
    train, val = split(ds, 0.2)
    assert len(train.data.stream) == 24 and len(val.data.stream) == 6
    with pytest.raises(SpecError) as e:
        bind(text(str(p), seq=5), net)
    assert "field 'tokens' has examples of shape [5], but input 'tokens' of LM expects int[4]" in err(e)


def test_text_bad_files(tmp_path: Path) -> None:
    p = tmp_path / "t.txt"
    p.write_text("", encoding="utf-8")
    with pytest.raises(SpecError) as e:
        text(str(p))
    assert f"{p}: is empty" in err(e)
    p.write_bytes(b"ab\xff\xfe")
    with pytest.raises(SpecError) as e:
        text(str(p))
    assert "is not UTF-8 text (byte 2 is 0xff)" in err(e)
    p.write_text("abcz", encoding="utf-8")
    with pytest.raises(SpecError) as e:
        text(str(p), vocab=["a", "b", "c"])
    assert "has characters outside the model's vocabulary: 'z'" in err(e)
    with pytest.raises(SpecError) as e:
        text(str(tmp_path / "none.txt"))
    assert "none.txt: no such file" in err(e)


def test_token_ids_out_of_range_for_the_embedding(tmp_path: Path) -> None:
    p = tmp_path / "t.txt"
    p.write_text("abcdefgh" * 4, encoding="utf-8")
    with pytest.raises(SpecError) as e:
        bind(text(str(p)), netdsl.loads(LM_NET, vocab=5))
    assert "t.txt: token id 5 in field 'tokens' is out of range for embedding" in err(e)


def test_words_cbow_pairs(tmp_path: Path) -> None:
    p = tmp_path / "s.txt"
    p.write_text("You say goodbye and I say hello.", encoding="utf-8")
    ds = words(str(p), window=1)
    assert ds.tokens == ["you", "say", "goodbye", "and", "i", "hello", "."] and ds.vocab == 7 and len(ds) == 6
    ctx, centre = ds.data.take(np.arange(6))
    assert ctx.shape == (6, 2) and centre.tolist() == [1, 2, 3, 4, 1, 5]
    with pytest.raises(SpecError) as e:
        words(str(p), window=4)
    assert "has 8 tokens: too few for a window of 4 on each side" in err(e)


def test_sequences_tasks_and_teacher_forcing() -> None:
    ds = sequences("reverse", length=5, vocab=7, count=50)
    src, tgt_in, tgt = ds.data.take(np.arange(50))
    assert (tgt == src[:, ::-1]).all() and (tgt_in[:, 0] == 0).all() and (tgt_in[:, 1:] == tgt[:, :-1]).all()
    assert src.min() >= 1 and src.max() < 7
    s = sequences("sort", length=5, vocab=7, count=10).data.take(np.arange(10))
    assert (np.diff(s[2], axis=1) >= 0).all()
    net = netdsl.loads(LM_NET.replace("seq=4", "seq=5"), vocab=7)
    assert bind(ds, net).inputs == ["tokens", "targets"]  # two inputs: (src, tgt)
    with pytest.raises(SpecError) as e:
        sequences("shuffle")
    assert "unknown task 'shuffle'" in err(e)


# ----------------------------------------------------------------------------- expressions, splits, batches


def test_parse_data_calls_and_bare_paths(tmp_path: Path) -> None:
    call = parse_data("digits(size=32)")
    assert (call.name, call.kwargs) == ("digits", {"size": 32})
    assert parse_data("digits").name == "digits"
    make_mnist(tmp_path / "m", "t10k")
    assert parse_data(str(tmp_path / "m")).kwargs == {"path": str(tmp_path / "m"), "split": "t10k"}
    np.savez(tmp_path / "d.npz", x=np.zeros(3))
    assert parse_data(str(tmp_path / "d.npz")).name == "npz"
    (tmp_path / "t.txt").write_text("hello", encoding="utf-8")
    assert parse_data(str(tmp_path / "t.txt")).name == "text"
    with pytest.raises(SpecError) as e:
        parse_data("digitz(size=3)")
    assert "unknown dataset 'digitz'" in err(e) and "did you mean 'digits'" in err(e)
    with pytest.raises(SpecError) as e:
        parse_data(str(tmp_path / "missing.npz"))
    assert "missing.npz: no such file or directory" in err(e)


def test_val_split_holds_out_the_last_part(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.arange(10, dtype=np.float32)[:, None], y=np.arange(10) % 2)
    ds = open_dataset(CallSpec("npz", (), {"path": str(tmp_path / "d.npz")}))
    train, val = split(ds, 0.2)
    assert train.data.arrays[0][:, 0].tolist() == list(range(8)) and val.data.arrays[0][:, 0].tolist() == [8, 9]
    assert split(ds, 0.0) == (ds, None)
    np.savez(tmp_path / "v.npz", x=np.ones((3, 1), np.float32), y=np.zeros(3, np.int64))
    _, other = split(ds, str(tmp_path / "v.npz"))
    assert other is not None and len(other) == 3
    with pytest.raises(SpecError) as e:
        split(ds, str(tmp_path / "nothere.npz"))
    assert "nothere.npz: no such file" in err(e)


def test_batcher_is_a_pure_function_of_seed_and_epoch(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.arange(65, dtype=np.float32)[:, None], y=np.zeros(65, np.int64))
    net = netdsl.loads("network A { input x: [1]\n input y: int[]\n o = x -> dense(2)\n output o\n"
                       " loss cross_entropy(o, y) }")
    bound = bind(npz(str(tmp_path / "d.npz")), net)
    b1, b2 = Batcher(bound, 16, seed=3), Batcher(bound, 16, seed=3)
    assert b1.steps_per_epoch == 4  # 65 = 4 × 16 + 1: no batch of one
    e1 = [b1.get(1, p, 0)["x"][:, 0] for p in range(4)]
    e0 = [b1.get(0, p, 0)["x"][:, 0] for p in range(4)]
    again = [b2.get(1, p, 0)["x"][:, 0] for p in range(4)]
    assert all((a == b).all() for a, b in zip(e1, again, strict=True))
    assert not all((a == b).all() for a, b in zip(e0, e1, strict=True))
    assert len(set(np.concatenate(e1).tolist())) == 64
    assert not (np.concatenate(e0) == np.arange(64)).all()


def test_augment_crop_flip_normalize() -> None:
    calls = [CallSpec("crop", (), {"pad": 1}), CallSpec("flip"), CallSpec("normalize", (), {"mean": [0.5, 0.5],
                                                                                            "std": 0.5})]
    aug = Augment(calls, "image", (2, 4, 4))
    x = np.random.default_rng(0).random((8, 2, 4, 4)).astype(np.float32)
    f1, f2 = {"image": x.copy()}, {"image": x.copy()}
    aug.train(f1, np.random.default_rng(5))
    aug.train(f2, np.random.default_rng(5))
    assert f1["image"].shape == x.shape and (f1["image"] == f2["image"]).all()
    e = {"image": x.copy()}
    aug.eval(e)
    assert np.allclose(e["image"], (x - 0.5) / 0.5)
    with pytest.raises(SpecError) as err_:
        Augment([CallSpec("normalize", (), {"mean": [0.1, 0.2, 0.3], "std": 1})], "image", (2, 4, 4))
    assert "normalize: mean has 3 values for images of 2 channels" in str(err_.value)
