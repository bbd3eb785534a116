"""The lecture's word-vector example: tokens, vocabulary, co-occurrence matrix and CBOW pairs."""

from __future__ import annotations

import numpy as np
from netdsl.runtime.words import build_vocab, cbow_pairs, cooccurrence, encode, tokenize

SENTENCE = "You say goodbye and I say hello."


def test_tokens_lower_case_with_the_period_as_a_token() -> None:
    assert tokenize(SENTENCE) == ["you", "say", "goodbye", "and", "i", "say", "hello", "."]
    assert tokenize("Don't stop, Bob!") == ["don't", "stop", ",", "bob", "!"]


def test_cooccurrence_is_the_lecture_matrix() -> None:
    vocab, m = cooccurrence(SENTENCE, window=1)
    assert vocab == ["you", "say", "goodbye", "and", "i", "hello", "."]
    expected = {
        "you": [0, 1, 0, 0, 0, 0, 0],
        "say": [1, 0, 1, 0, 1, 1, 0],
        "goodbye": [0, 1, 0, 1, 0, 0, 0],
        "and": [0, 0, 1, 0, 1, 0, 0],
        "i": [0, 1, 0, 1, 0, 0, 0],
        "hello": [0, 1, 0, 0, 0, 0, 1],
        ".": [0, 0, 0, 0, 0, 1, 0],
    }
    for word, row in expected.items():
        assert m[vocab.index(word)].tolist() == row, word
    assert (m == m.T).all()


def test_cooccurrence_wider_window_counts_both_sides() -> None:
    vocab, m = cooccurrence("a b c", window=2)
    assert vocab == ["a", "b", "c"]
    assert m.tolist() == [[0, 1, 1], [1, 0, 1], [1, 1, 0]]


def test_cbow_pairs_context_then_centre() -> None:
    toks = tokenize(SENTENCE)
    vocab = build_vocab(toks)
    ctx, centre = cbow_pairs(encode(toks, vocab), window=1)
    words = [[vocab[i] for i in row] for row in ctx]
    assert words == [["you", "goodbye"], ["say", "and"], ["goodbye", "i"], ["and", "say"], ["i", "hello"],
                     ["say", "."]]
    assert [vocab[i] for i in centre] == ["say", "goodbye", "and", "i", "say", "hello"]
    ctx2, centre2 = cbow_pairs(np.arange(10), window=2)
    assert ctx2[0].tolist() == [0, 1, 3, 4] and centre2[0] == 2 and len(centre2) == 6
