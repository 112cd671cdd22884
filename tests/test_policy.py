"""The chain policy's three faces agree; decoding masks, caps and scores as documented; save/load."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from helpers import sample_decode

from labelchain.agents.decoding import (
    beam_search,
    greedy_decode,
    predict,
    sequence_log_probs,
)
from labelchain.agents.features import doc_features
from labelchain.agents.label_scores import labels_to_csr, position_scores
from labelchain.agents.policy import ChainPolicy

N_FEATURES, N_LABELS = 30, 9
STOP = N_LABELS


@pytest.fixture
def X() -> sp.csr_matrix:
    return sp.random(24, N_FEATURES, density=0.2, format="csr", dtype=np.float32, random_state=0)


@pytest.fixture
def policy() -> ChainPolicy:
    torch.manual_seed(0)
    return ChainPolicy(N_FEATURES, N_LABELS, hidden_size=16, label_embed_size=8, dropout=0.3).eval()


def test_sparse_and_dense_inputs_encode_the_same(policy, X):
    assert torch.allclose(policy.encode(X), policy.encode(X.toarray()), atol=1e-6)
    assert torch.allclose(policy.encode(doc_features(X)), policy.encode(torch.from_numpy(X.toarray())), atol=1e-6)


def test_three_faces_give_the_same_logits(policy, X):
    targets = torch.tensor([[3, 1, 4, STOP], [0, STOP, -1, -1], [STOP, -1, -1, -1]])
    rows = X[:3]
    seq_logits, seq_values = policy.sequence_logits(rows, targets)
    state = policy.initial_state(rows)
    last = torch.full((3,), -1)
    for t in range(4):
        logits, value, state = policy.step(state, last)
        valid = targets[:, t] >= 0
        assert torch.allclose(logits[valid], seq_logits[valid, t], atol=1e-5)
        assert torch.allclose(value[valid], seq_values[valid, t], atol=1e-5)
        history = targets[:, :t].masked_fill(targets[:, :t] == STOP, -1)
        prefix_logits, prefix_values = policy.prefix_logits(rows, history)
        assert torch.allclose(prefix_logits[valid], seq_logits[valid, t], atol=1e-5)
        assert torch.allclose(prefix_values[valid], seq_values[valid, t], atol=1e-5)
        last = targets[:, t]
    with pytest.raises(ValueError, match="left-aligned"):
        policy.prefix_logits(rows, torch.tensor([[-1, 2], [0, 1], [1, -1]]))


def _check_chains(result, cap):
    labels = result.labels.numpy()
    actions = result.actions.numpy()
    assert actions.shape[1] <= cap
    for row, acts in zip(labels, actions):
        emitted = row[row >= 0]
        assert len(set(emitted.tolist())) == len(emitted), "a label was repeated"
        assert (emitted < N_LABELS).all()
        stops = np.nonzero(acts == STOP)[0]
        assert len(stops) <= 1 and (len(stops) == 0 or (acts[stops[0] + 1 :] == -1).all())


def test_decoders_never_repeat_and_respect_the_cap(policy, X):
    with torch.no_grad():
        policy.policy_head.bias[STOP] = -20.0  # never stop on its own: only the cap ends chains
        for cap in (1, 4, N_LABELS + 1):
            for result in (
                greedy_decode(policy, X, max_steps=cap),
                sample_decode(policy, X, max_steps=cap, generator=torch.Generator().manual_seed(0)),
                beam_search(policy, X, beam_width=3, max_steps=cap),
            ):
                _check_chains(result, cap)
                assert (result.n_labels_emitted == min(cap, N_LABELS)).all()
        # a cap beyond L: every label once, then STOP is the only action left
        result = greedy_decode(policy, X, max_steps=50)
        assert (result.n_labels_emitted == N_LABELS).all() and (result.actions[:, -1] == STOP).all()


def test_stop_suppression_and_set_lengths(policy, X):
    with torch.no_grad():
        policy.policy_head.bias[STOP] = 20.0  # STOP at once unless suppressed
        free = greedy_decode(policy, X, max_steps=8)
        assert (free.n_labels_emitted == 0).all()
        forced = greedy_decode(policy, X, max_steps=8, suppress_stop_steps=3)
        assert (forced.n_labels_emitted == 3).all() and (forced.set_lengths == 0).all()
        _check_chains(forced, 8)


def test_beam_of_one_is_greedy(policy, X):
    with torch.no_grad():
        for suppress in (0, 2):
            greedy = greedy_decode(policy, X, max_steps=6, suppress_stop_steps=suppress)
            beam = beam_search(policy, X, beam_width=1, max_steps=6, suppress_stop_steps=suppress)
            assert torch.equal(greedy.actions, beam.actions)
            assert torch.allclose(greedy.log_probs, beam.log_probs, atol=1e-5)


def test_wider_beam_finds_at_least_as_probable_chains(policy, X):
    with torch.no_grad():
        narrow = beam_search(policy, X, beam_width=1, max_steps=6).log_probs.sum(dim=1)
        wide = beam_search(policy, X, beam_width=4, max_steps=6).log_probs.sum(dim=1)
    assert (wide >= narrow - 1e-5).all() and (wide > narrow + 1e-6).any()


def test_sampling_is_seeded_and_rescoring_matches(policy, X):
    with torch.no_grad():
        a = sample_decode(policy, X, max_steps=6, generator=torch.Generator().manual_seed(7))
        b = sample_decode(policy, X, max_steps=6, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a.actions, b.actions)
    log_probs, entropy, values = sequence_log_probs(policy, X, a.actions)
    assert torch.allclose(log_probs, a.log_probs, atol=1e-5)
    assert torch.allclose(values, a.values, atol=1e-5)
    assert (entropy[a.actions >= 0] > 0).all() and (entropy[a.actions < 0] == 0).all()


def test_sets_and_position_scores_exact():
    labels = torch.tensor([[2, 0, -1], [-1, -1, -1]])
    assert labels_to_csr(labels, 4).toarray().tolist() == [[True, False, True, False], [False] * 4]
    assert labels_to_csr(labels, 4, lengths=[1, 0]).toarray()[0].tolist() == [False, False, True, False]
    first_probs = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.5, 0.0, 0.25, 0.25]])
    scores = position_scores(labels, 4, first_probs)
    np.testing.assert_allclose(scores, [[2.0, -0.8, 3.0, -0.6], [-0.5, -1.0, -0.75, -0.75]], atol=1e-6)


def test_predict_batches_agree_and_scores_rank_the_set_first(policy, X):
    Y_big, scores_big = predict(policy, X, batch_size=100, max_steps=6, score_steps=3)
    Y_small, scores_small = predict(policy, X, batch_size=5, max_steps=6, score_steps=3)
    assert (Y_big != Y_small).nnz == 0
    np.testing.assert_allclose(scores_big, scores_small, atol=1e-5)
    assert ((scores_big >= 1).sum(axis=1) >= 3).all()  # at least score_steps labels ranked by position
    assert (scores_big[Y_big.toarray()] >= 1).all()  # every predicted label is among the emitted
    Y_beam, scores_beam = predict(policy, X, method="beam", beam_width=2, max_steps=6, score_steps=3)
    assert Y_beam.shape == (X.shape[0], N_LABELS) and scores_beam.shape == (X.shape[0], N_LABELS)


def test_input_normalization_makes_affine_rescaling_irrelevant():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 5)).astype(np.float32)
    torch.manual_seed(1)
    a = ChainPolicy(5, 3, hidden_size=8).eval().fit_input_normalization(X)
    torch.manual_seed(1)
    b = ChainPolicy(5, 3, hidden_size=8).eval().fit_input_normalization(X * 100 - 7)
    assert torch.allclose(a.encode(X), b.encode(X * 100 - 7), atol=1e-4)


def test_save_load_round_trip(policy, X, tmp_path):
    policy.fit_input_normalization(X)
    policy.save(tmp_path / "ckpt")
    loaded = ChainPolicy.load(tmp_path / "ckpt").eval()
    assert loaded.config == policy.config
    for key, value in policy.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])
    with torch.no_grad():
        assert torch.equal(greedy_decode(policy, X).actions, greedy_decode(loaded, X).actions)
    assert not list((tmp_path / "ckpt").glob("*.tmp"))
    with pytest.raises(FileNotFoundError, match="no saved ChainPolicy"):
        ChainPolicy.load(tmp_path / "missing")
