"""The tree output layer's decoding speed-ups keep it exact: golden values computed before them, the
greedy log-probs read off the beam equal the re-scored ones, every scoring way gives the same scores.

(Apart from tests/test_tree_policy.py, which tests the distribution itself, to keep files short.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from labelchain.agents.chain_step import HistoryEmitted
from helpers import sample_decode

from labelchain.agents.decoding import beam_search, greedy_decode
from labelchain.agents.policy import ChainPolicy
from labelchain.agents.tree_ops import SCORE_WAYS, gathered_scores, history_counts, score_way
from labelchain.envs.label_clusters import build_label_tree


def golden_tree_policy() -> ChainPolicy:
    """200 labels, B = 3, leaves of <= 8 (depth 3, 27 leaves), beam 2: every scoring way gets used."""
    tree = build_label_tree(np.random.default_rng(3).normal(size=(200, 6)), 3, 8, seed=3)
    torch.manual_seed(3)
    return ChainPolicy(7, 200, hidden_size=16, label_embed_size=4, output="tree", tree=tree, tree_beam=2).eval()


def test_tree_decoding_keeps_its_golden_values():
    """Actions, log-probs and entropies as computed before the decoding speed-ups (commit 9d419a7)."""
    policy, X = golden_tree_policy(), np.random.default_rng(4).normal(size=(5, 7)).astype(np.float32)
    with torch.no_grad():
        greedy = greedy_decode(policy, X, max_steps=6, suppress_stop_steps=3)
        sampled = sample_decode(policy, X, max_steps=6, generator=torch.Generator().manual_seed(5), temperature=1.3)
        beam = beam_search(policy, X, beam_width=3, max_steps=4, suppress_stop_steps=2)
        joint, _, _ = policy.step_joint(policy.initial_state(X), torch.full((5,), -1))
        emitted = HistoryEmitted(torch.tensor([[0, 7], [1, -1], [199, 5], [-1, -1], [3, 4]]))
        suppressed = policy.output.choose(joint, emitted, suppress_stop=True, sample=False)
        free = policy.output.choose(joint, emitted, suppress_stop=False, sample=False)
    greedy_actions = [[47, 6, 136, 200], [135, 127, 163, 200], [106, 150, 57, 200], [106, 69, 86, 200]]
    assert greedy.actions.tolist() == greedy_actions + [[112, 160, 105, 200]]
    np.testing.assert_allclose(
        greedy.log_probs[:2].numpy(),
        [[-4.17673, -4.09709, -3.96619, -1.14419], [-4.07254, -3.97633, -3.68914, -1.27563]],
        atol=2e-5,
    )
    assert sampled.actions[1].tolist() == [108, 49, 118, 29, 180, 90]
    assert sampled.actions[[0, 2, 3, 4], 0].tolist() == [200, 159, 168, 115]
    np.testing.assert_allclose(sampled.log_probs[1, :3].numpy(), [-5.87138, -6.09060, -6.12368], atol=2e-5)
    assert beam.actions[:, :2].tolist() == [[47, 136], [135, 127], [106, 150], [106, 69], [112, 160]]
    np.testing.assert_allclose(beam.log_probs[0].numpy(), [-4.17673, -4.10009, -1.11982], atol=2e-5)
    assert suppressed.action.tolist() == [47, 135, 106, 106, 112] and free.action.tolist() == [200] * 5
    np.testing.assert_allclose(suppressed.log_prob.numpy()[[0, 4]], [-4.17673, -4.13406], atol=2e-5)
    np.testing.assert_allclose(suppressed.entropy.numpy()[:2], [5.20979, 5.07126], atol=2e-5)
    np.testing.assert_allclose(free.log_prob.numpy()[:2], [-1.10279, -1.37909], atol=2e-5)
    np.testing.assert_allclose(free.entropy.numpy()[:2], [1.34301, 1.37781], atol=2e-5)
    assert suppressed.natural_stop.all() and free.natural_stop.all()
    first = greedy.first_probs.to_dense()
    assert (first > 0).sum(dim=1).tolist() == [15, 14, 15, 15, 14]
    np.testing.assert_allclose(first.sum(dim=1).numpy(), [0.11181, 0.10791, 0.11902, 0.11025, 0.08950], atol=2e-5)


@pytest.mark.parametrize("stop_bias", [0.0, -10.0])  # STOP is often greedy / never greedy
def test_greedy_log_probs_read_off_the_beam_are_the_rescored_ones(stop_bias):
    policy = golden_tree_policy()
    policy.output.stop_bias.data.fill_(stop_bias)
    X = np.random.default_rng(6).normal(size=(8, 7)).astype(np.float32)
    history = torch.randint(200, (8, 3), generator=torch.Generator().manual_seed(7)).masked_fill(
        torch.eye(8, 3, dtype=torch.bool), -1
    )
    with torch.no_grad():
        joint, _, _ = policy.step_joint(policy.initial_state(X), torch.full((8,), -1))
        for suppress in (False, True):
            choice = policy.output.choose(joint, HistoryEmitted(history), suppress_stop=suppress, sample=False)
            blocked = policy.output._stop_blocked(history, suppress)
            log_p, entropy = policy.output._action_log_probs(joint, choice.action, history, blocked, 1.0)
            assert torch.allclose(choice.log_prob, log_p, atol=1e-5) and torch.allclose(
                choice.entropy, entropy, atol=1e-5
            )
            assert (choice.action == 200).any() == (stop_bias == 0.0 and not suppress)


@pytest.mark.parametrize("sparse", [False, True])
def test_every_scoring_way_gives_the_candidates_scores_and_gradients(sparse):
    rng = torch.Generator().manual_seed(0)
    joint = torch.randn(6, 5, generator=rng)
    ids = torch.randint(40, (6, 7), generator=rng)
    weight, bias = torch.randn(40, 5, generator=rng), torch.randn(40, 1, generator=rng)
    w = weight.clone().requires_grad_()
    reference = (w[ids] * joint[:, None, :]).sum(-1) + bias[ids, 0]
    (expected,) = torch.autograd.grad(reference.sin().sum(), w)
    for way in SCORE_WAYS if not sparse else ("union", "gather", None):
        w = weight.clone().requires_grad_()
        scores = gathered_scores(joint, w, bias, ids, sparse=sparse, way=way)
        assert torch.allclose(scores, reference, atol=1e-5), way
        (grad,) = torch.autograd.grad(scores.sin().sum(), w)
        assert grad.is_sparse == sparse and torch.allclose(grad.to_dense(), expected, atol=1e-5), way
    with pytest.raises(ValueError, match="every row of a sparse table"):
        gathered_scores(joint, weight.requires_grad_(), bias, ids, sparse=True, way="dense")
    # Decoding (many rows sharing few candidates) takes the union; one path per row gathers.
    assert score_way(200, 250, 100_000, 2_600, sparse=False) == "union"
    assert score_way(200, 630, 1_000, 1_000, sparse=False) == "dense"
    assert score_way(2_000, 1, 100_000, 2_000, sparse=True) == "gather"


def test_history_counts_are_the_brute_force_comparison():
    rng = torch.Generator().manual_seed(0)
    groups = torch.randint(6, (4, 3), generator=rng)
    members = torch.randint(-1, 30, (6, 5), generator=rng)  # group g's member at position m (-1 pad)
    history = torch.randint(-1, 30, (4, 9), generator=rng)
    group_of = torch.full((31,), -1)
    position_of = torch.zeros(31, dtype=torch.long)
    for g, m in (members >= 0).nonzero().tolist():  # the last group listing a label owns it
        group_of[members[g, m]], position_of[members[g, m]] = g, m
    owned = group_of[history.clamp(min=0)].masked_fill(history < 0, -1)
    counts = history_counts(groups, owned, position_of[history.clamp(min=0)], 5)
    in_group = members[groups]  # (4, 3, 5)
    brute = ((in_group[..., None] == history[:, None, None, :]) & (in_group[..., None] >= 0)).sum(-1)
    owner_ok = (group_of[in_group.clamp(min=0)] == groups[..., None]) & (
        position_of[in_group.clamp(min=0)] == torch.arange(5)
    )
    assert torch.equal(counts, torch.where(owner_ok, brute, 0))
    assert counts.sum() > 0


@pytest.mark.slow
def test_suppressed_greedy_emits_every_label_once_through_exhausted_nodes():
    policy = golden_tree_policy()
    X = np.random.default_rng(8).normal(size=(2, 7)).astype(np.float32)
    with torch.no_grad():
        result = greedy_decode(policy, X, suppress_stop_steps=200)
    for row in result.labels.numpy():
        assert sorted(row[row >= 0].tolist()) == list(range(200))
    assert (result.actions[:, 200] == 200).all()  # STOP once every label is out
