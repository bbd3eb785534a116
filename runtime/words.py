"""Words: tokenising, vocabularies, the co-occurrence matrix and CBOW (context → centre) pairs.

As the lecture does it: text is lower-cased, punctuation marks are tokens of their own (`.`), and word ids are
given in order of first appearance. For "You say goodbye and I say hello." with window 1:

    >>> vocab, m = cooccurrence("You say goodbye and I say hello.", window=1)
    >>> vocab
    ['you', 'say', 'goodbye', 'and', 'i', 'hello', '.']
    >>> m[1].tolist()
    [1, 0, 1, 0, 1, 1, 0]
"""

from __future__ import annotations

import re

import numpy as np

_TOKEN = re.compile(r"\w+(?:'\w+)*|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Lower-cased words; each punctuation mark is a token (`hello.` → `hello`, `.`)."""
    return _TOKEN.findall(text.lower())


def build_vocab(tokens: list[str]) -> list[str]:
    """The distinct tokens in order of first appearance (id = position)."""
    return list(dict.fromkeys(tokens))


def encode(tokens: list[str], vocab: list[str]) -> np.ndarray:
    index = {w: i for i, w in enumerate(vocab)}
    return np.array([index[t] for t in tokens], dtype=np.int64)


def cooccurrence(text: str, window: int = 1) -> tuple[list[str], np.ndarray]:
    """The co-occurrence matrix: `m[i, j]` counts how often word j appears within `window` words of word i."""
    if window < 1:
        raise ValueError(f"window must be at least 1, found {window}")
    tokens = tokenize(text)
    vocab = build_vocab(tokens)
    ids = encode(tokens, vocab)
    m = np.zeros((len(vocab), len(vocab)), dtype=np.int64)
    n = len(ids)
    for pos, w in enumerate(ids):
        for d in range(1, window + 1):
            if pos - d >= 0:
                m[w, ids[pos - d]] += 1
            if pos + d < n:
                m[w, ids[pos + d]] += 1
    return vocab, m


def cbow_pairs(ids: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Contexts `int[n, 2·window]` (the `window` words before, then the `window` after) and centre ids `int[n]`.

    Every position with a full window on both sides is a centre, as in the lecture's `create_contexts_target`.
    """
    ids = np.asarray(ids, dtype=np.int64)
    n = len(ids) - 2 * window
    if n <= 0:
        return np.zeros((0, 2 * window), dtype=np.int64), np.zeros((0,), dtype=np.int64)
    centres = np.arange(window, window + n)
    offsets = np.concatenate([np.arange(-window, 0), np.arange(1, window + 1)])
    contexts = ids[centres[:, None] + offsets[None, :]]
    return contexts, ids[centres]
