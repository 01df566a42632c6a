"""Token alignment across tokenizers and resonance per position with its null."""

import numpy as np
import pytest

from resonance import positions
from resonance.activations import Activations


class _Tok:
    """A tokenizer stand-in: id -> piece through a vocabulary, with special ids."""

    def __init__(self, vocab, special=()):
        self.vocab, self.all_special_ids = vocab, list(special)

    def convert_ids_to_tokens(self, ids):
        return [self.vocab[i] for i in ids]


def _acts(sequences, d, rng, key="stim"):
    """Token-level Activations of ``sequences`` (lists of ids), one random layer."""
    ids = np.concatenate([np.asarray(s) for s in sequences])
    item = np.repeat(np.arange(len(sequences)), [len(s) for s in sequences])
    pos = np.concatenate([np.arange(len(s)) for s in sequences])
    layer = rng.standard_normal((len(ids), d)).astype(np.float32)
    return Activations([layer], [0], "toy", "tokens", key, n_items=len(sequences), item=item,
                       positions=pos, token_ids=ids)


def test_aligned_tokens_keeps_identically_cut_texts_and_drops_specials():
    rng = np.random.default_rng(0)
    # Model A: [CLS]=0 ... [SEP]=1; model B: <s>=0 ... </s>=1, other ids for the same pieces.
    tok_a = _Tok({0: "[CLS]", 1: "[SEP]", 2: "the", 3: "dog", 4: "runs", 5: "##s"}, special=(0, 1))
    tok_b = _Tok({0: "<s>", 1: "</s>", 7: "the", 8: "dog", 9: "runs", 6: "run", 5: "##s"},
                 special=(0, 1))
    a = _acts([[0, 2, 3, 1], [0, 3, 4, 1], [0, 2, 4, 1]], 4, rng)
    b = _acts([[0, 7, 8, 1], [0, 8, 9, 1], [0, 7, 6, 5, 1]], 6, rng)  # text 2 cut differently
    rows_a, rows_b, pos = positions.aligned_tokens(a, b, tok_a, tok_b)
    assert pos.tolist() == [0, 1, 0, 1]
    assert rows_a.tolist() == [1, 2, 5, 6] and rows_b.tolist() == [1, 2, 5, 6]
    assert [tok_a.vocab[i] for i in a.token_ids[rows_a]] == ["the", "dog", "dog", "runs"]


def test_aligned_tokens_refuses_tokenizers_that_cut_differently():
    rng = np.random.default_rng(1)
    tok = _Tok({0: "a", 1: "b", 2: "ab"})
    a = _acts([[0, 1], [0, 1]], 3, rng)
    b = _acts([[2], [2]], 3, rng)
    with pytest.raises(ValueError, match="no shared token positions"):
        positions.aligned_tokens(a, b, tok, tok)


def test_aligned_tokens_needs_token_level_activations_on_the_same_stimuli():
    rng = np.random.default_rng(2)
    tok = _Tok({0: "a", 1: "b"})
    a = _acts([[0, 1]], 3, rng)
    with pytest.raises(ValueError, match="different stimuli"):
        positions.aligned_tokens(a, _acts([[0, 1]], 3, rng, key="other"), tok, tok)
    pooled = Activations([np.zeros((1, 3))], [0], "toy", "mean", "stim", n_items=1)
    with pytest.raises(ValueError, match="pool='tokens'"):
        positions.aligned_tokens(pooled, a, tok, tok)


def test_positional_trajectory_of_a_rotated_copy_beats_its_null():
    rng = np.random.default_rng(3)
    n_pos, per = 3, 40
    A = rng.standard_normal((n_pos * per, 12))
    Q = np.linalg.qr(rng.standard_normal((12, 12)))[0]
    pos = np.repeat(np.arange(n_pos), per)
    table = positions.positional_trajectory(A, 2 * A @ Q, pos, n_null=49, min_items=20)
    assert table["position"].tolist() == [0, 1, 2]
    assert np.allclose(table["value"], 1.0)
    assert np.allclose(table["p_value"], 1 / 50)
    assert (table["null_high"] < 0.3).all()


def test_positional_trajectory_of_independent_tokens_stays_in_its_null():
    rng = np.random.default_rng(4)
    pos = np.repeat(np.arange(4), 40)
    table = positions.positional_trajectory(rng.standard_normal((160, 8)),
                                            rng.standard_normal((160, 8)), pos, n_null=99,
                                            min_items=20, seed=1)
    assert (table["p_value"] > 0.01).all()
    assert ((table["null_low"] <= table["value"]) & (table["value"] <= table["null_high"])).sum() >= 3


def test_positional_trajectory_rejects_distances_and_empty_positions():
    rng = np.random.default_rng(5)
    A = rng.standard_normal((30, 4))
    with pytest.raises(ValueError, match="is a distance"):
        positions.positional_trajectory(A, A, np.zeros(30, int), "procrustes")
    with pytest.raises(ValueError, match="no position has 64"):
        positions.positional_trajectory(A, A, np.zeros(30, int), min_items=64)
    with pytest.raises(ValueError, match="n_null must be a positive integer"):
        positions.positional_trajectory(A, A, np.zeros(30, int), n_null=0)
