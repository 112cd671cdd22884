"""Ranking scores of MCG chains count labels, not cluster tokens: STOP stays blocked until
`score_steps` labels are out, and never-emitted labels are ranked by the probabilities of each
document's first label step. Plain chains keep the values they had before these rules came."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from labelchain.agents.decoding import beam_search, greedy_decode, predict, rollout, sequence_log_probs
from labelchain.agents.policy import ChainPolicy
from labelchain.envs.mcg import MCGSpec, emitted_mask

# 4 labels, 2 clusters: labels 0, 1 in cluster 0 (id 4), label 2 in cluster 1 (id 5), label 3 in both
MEMBERSHIP = sp.csr_matrix(np.array([[1, 0], [1, 0], [0, 1], [1, 1]], dtype=bool))
L, STOP = 4, 6
X_TEST = np.array([[0, 0, 1], [1, 0, 0]], dtype=np.float32)


def _hand_policy(restrict: bool, bias: list[float]) -> ChainPolicy:
    """An MCG policy whose logits are `bias` at every step (zero output weights): hand-computable."""
    torch.manual_seed(0)
    policy = ChainPolicy(3, 6, hidden_size=8, mcg=MCGSpec(MEMBERSHIP, restrict)).eval()
    with torch.no_grad():
        policy.policy_head.weight.zero_()
        policy.policy_head.bias.copy_(torch.tensor(bias))
    return policy


def _softmax(logits: list[float]) -> np.ndarray:
    z = np.exp(np.array(logits, dtype=np.float64))
    return z / z.sum()


def test_two_clusters_then_score_steps_labels_by_position_and_first_label_step_probs():
    # clusters 4, 5 beat everything; STOP (5) beats every label: counted in actions, a 2-step
    # suppression ranked no label at all (4, 5, STOP); counted in labels the chain ranks two
    policy = _hand_policy(False, [3, 1, 2, 0, 10, 9, 5])
    with torch.no_grad():
        chains = greedy_decode(policy, X_TEST, suppress_stop_steps=2)
    assert chains.actions.tolist() == [[4, 5, 0, 2, STOP]] * 2
    assert chains.set_lengths.tolist() == [2, 2]  # the free chain stops after its clusters
    # first label step = step 2: clusters emitted, labels and STOP allowed
    p = _softmax([3, 1, 2, 0, 5])[:L]
    np.testing.assert_allclose(chains.first_probs[:, :L].numpy(), [p, p], rtol=1e-6)
    Y_pred, scores = predict(policy, X_TEST, score_steps=2)
    assert Y_pred.shape == (2, L) and Y_pred.nnz == 0
    expected = [5 - 2, p[1] - 1, 5 - 3, p[3] - 1]  # T - position for labels 0 and 2
    np.testing.assert_allclose(scores, [expected, expected], rtol=1e-6)
    beam_Y, beam_scores = predict(policy, X_TEST, score_steps=2, method="beam", beam_width=2)
    np.testing.assert_allclose(beam_scores, scores, rtol=1e-6)


def test_restricted_chain_ranks_the_chosen_clusters_members_first():
    # one cluster (4: labels 0, 1, 3); at the first label step label 2 is outside it: probability 0
    policy = _hand_policy(True, [3, 1, 2, 0, 10, -1, 5])
    with torch.no_grad():
        chains = greedy_decode(policy, X_TEST, suppress_stop_steps=2)
    assert chains.actions.tolist() == [[4, 0, 1, STOP]] * 2
    p = _softmax([3, 1, 0, -1, 5])  # allowed at step 1: labels 0, 1, 3, cluster 5, STOP
    _, scores = predict(policy, X_TEST, score_steps=2)
    expected = [4 - 1, 4 - 2, -1.0, p[2] - 1]
    np.testing.assert_allclose(scores, [expected, expected], rtol=1e-6)


def _random_policy(restrict: bool, seed: int) -> ChainPolicy:
    """A seeded MCG policy nudged towards cluster tokens, so chains open with one or two of them."""
    torch.manual_seed(seed)
    policy = ChainPolicy(3, 6, hidden_size=8, label_embed_size=4, mcg=MCGSpec(MEMBERSHIP, restrict)).eval()
    with torch.no_grad():
        policy.policy_head.bias[4:6] += 1.5
        policy.policy_head.weight[4:6] *= 5.0  # which clusters depends on the document and the history
    return policy


def _first_label_steps(actions: np.ndarray) -> np.ndarray:
    """Per row, the first step whose action is no cluster token (label, STOP, or the last step)."""
    not_cluster = (actions < L) | (actions == STOP)
    return np.where(not_cluster.any(axis=1), not_cluster.argmax(axis=1), (actions >= 0).sum(axis=1) - 1)


@pytest.mark.parametrize("restrict", [False, True])
def test_first_probs_are_each_documents_first_label_step(restrict):
    """Reference: the memoryless face (prefix_logits) at each row's first label step, masked by the
    numpy constraint (envs.mcg), softmax; never-emitted labels score p - 1 in `predict`."""
    policy = _random_policy(restrict, seed=1)
    X = np.random.default_rng(2).normal(size=(40, 3)).astype(np.float32)
    with torch.no_grad():
        chains = greedy_decode(policy, X, suppress_stop_steps=3)
        actions = chains.actions.numpy()
        steps = _first_label_steps(actions)
        assert len(set(steps.tolist())) >= 2  # documents open with different numbers of clusters
        history = np.where(np.arange(actions.shape[1])[None, :] < steps[:, None], actions, -1)
        logits, _ = policy.prefix_logits(X, torch.from_numpy(history))
    allowed = MCGSpec(MEMBERSHIP, restrict).allowed_actions(emitted_mask(np.where(history >= 0, history, STOP), 6))
    reference = torch.softmax(logits.masked_fill(torch.from_numpy(~allowed), float("-inf")), dim=1)[:, :L]
    np.testing.assert_allclose(chains.first_probs[:, :L].numpy(), reference.numpy(), atol=1e-6)
    _, scores = predict(policy, X, score_steps=3)
    never = scores < 1
    np.testing.assert_allclose(scores[never], reference.numpy()[never] - 1, atol=1e-6)


@pytest.mark.parametrize("restrict", [False, True])
def test_every_decoder_counts_labels_and_agrees_with_teacher_forcing(restrict):
    policy = _random_policy(restrict, seed=3)
    X = np.random.default_rng(4).normal(size=(30, 3)).astype(np.float32)
    with torch.no_grad():
        greedy = greedy_decode(policy, X, suppress_stop_steps=3)
        beam = beam_search(policy, X, beam_width=1, suppress_stop_steps=3)
        sampled = rollout(policy, X, sample=True, generator=torch.Generator().manual_seed(0), suppress_stop_steps=3)
        rescored, _, _ = sequence_log_probs(policy, X, greedy.actions, suppress_stop_steps=3)
    assert torch.equal(greedy.actions, beam.actions)
    assert torch.allclose(greedy.first_probs, beam.first_probs, atol=1e-6)
    assert torch.allclose(rescored, greedy.log_probs, atol=1e-5)
    spec, counts = MCGSpec(MEMBERSHIP, restrict), []
    for chains in (greedy, sampled):
        labels = chains.labels.numpy()
        counts.append(((labels >= 0) & (labels < L)).sum(axis=1))
        left = spec.allowed_actions(emitted_mask(np.where(labels >= 0, labels, STOP), 6))[:, :STOP].any(axis=1)
        assert ((counts[-1] >= 3) | ~left).all()  # 3 labels, or fewer only where nothing but STOP was left
    assert (np.concatenate(counts) < 3).any() == restrict  # restricted: cluster 5 alone holds 2 labels
    _, scores = predict(policy, X, score_steps=3)
    assert ((scores >= 1).sum(axis=1) == counts[0]).all()  # predict ranks the greedy chain's labels


# A plain chain (no MCG): predict's sets and scores as computed before the MCG ranking rules
# (commit fc738f8), rounded to 6 decimals: greedy, beam of 2, and 3-sample marginals.
GOLDEN = {
    "greedy": (
        [[2], [2], [2], [2]],
        [
            [-0.896897, -0.899797, 4.0, 2.0, 3.0, -0.920941],
            [-0.910473, 3.0, 4.0, 2.0, -0.901327, -0.941893],
            [-0.886511, 3.0, 4.0, -0.926665, -0.922559, 2.0],
            [-0.943621, -0.888754, 4.0, -0.906816, 2.0, 3.0],
        ],
    ),
    "beam": (
        [[], [], [], []],
        [
            [-0.896897, -0.899797, 4.0, -0.888764, 3.0, 2.0],
            [-0.910473, 3.0, 4.0, -0.892957, -0.901327, 2.0],
            [-0.886511, 3.0, 4.0, -0.926665, -0.922559, 2.0],
            [-0.943621, -0.888754, 4.0, -0.906816, 2.0, 3.0],
        ],
    ),
    "marginal": (
        [[2], [2], [2], [2]],
        [
            [0.683851, 0.350034, 1.042076, 0.351873, 0.353893, 1.013177],
            [0.348254, 1.022772, 1.048532, 1.017841, 0.683112, 0.676351],
            [0.685582, 0.694958, 1.043126, 0.678889, 0.34624, 0.681313],
            [0.34273, 0.351874, 0.705082, 0.682197, 0.691629, 1.02819],
        ],
    ),
}


@pytest.mark.parametrize("mode", sorted(GOLDEN))
def test_plain_chain_keeps_its_golden_sets_and_scores(mode):
    torch.manual_seed(5)
    policy = ChainPolicy(5, 6, hidden_size=8, label_embed_size=4).eval()
    with torch.no_grad():
        policy.policy_head.bias[6] = 0.6  # STOP competes: the free sets differ from the ranked chains
    X = np.random.default_rng(5).normal(size=(4, 5)).astype(np.float32)
    options = {"greedy": {}, "beam": {"method": "beam", "beam_width": 2}, "marginal": {"score_mode": "marginal"}}
    Y, scores = predict(policy, X, max_steps=5, score_steps=3, n_samples=3, **options[mode])
    sets, expected = GOLDEN[mode]
    assert [np.flatnonzero(row).tolist() for row in Y.toarray()] == sets
    np.testing.assert_allclose(scores, expected, atol=2e-6)
    exact = np.floor(np.array(expected) * (3 if mode == "marginal" else 1))  # positions, sample counts
    assert np.array_equal(np.floor(scores.astype(np.float64) * (3 if mode == "marginal" else 1)), exact)
