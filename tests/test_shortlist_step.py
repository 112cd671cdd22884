"""The O(M) step of a shortlisting prior policy (agents.shortlist_step) gives the dense step's numbers:
the same greedy and beam chains, log-probs, values, first-step probabilities, teacher-forcing loss
and gradients, to float rounding; and it is the step the decoders choose by themselves."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from labelchain.agents import tree_ops
from labelchain.agents.decoding import beam_search, greedy_decode, predict, rollout, sequence_log_probs
from labelchain.agents.policy import ChainPolicy
from labelchain.agents.prior_columns import prior_columns, with_prior_columns
from labelchain.agents.shortlist_step import compact_applies, document_shortlist
from labelchain.agents.supervised import teacher_forcing_loss
from labelchain.envs.shortlist import shortlist_from_scores

N_FEATURES, N_LABELS, M = 10, 40, 6
STOP = N_LABELS
ATOL = 1e-5


@pytest.fixture(autouse=True, params=["auto", "union", "gather"])
def score_way(request, monkeypatch) -> str:
    """Every test under each exact way of scoring the gathered shortlist (agents.tree_ops.gathered_scores
    picks "dense", a GEMM over all L + 1 rows, at this small L by itself)."""
    if request.param != "auto":
        monkeypatch.setattr(tree_ops, "score_way", lambda *args: request.param)
    return request.param


def _policy(prior: str = "per_label", shortlist: bool = True) -> ChainPolicy:
    torch.manual_seed(3)
    policy = ChainPolicy(
        N_FEATURES, N_LABELS, hidden_size=16, label_embed_size=8, dropout=0.0, prior=prior, shortlist=shortlist
    )
    with torch.no_grad():  # a prior that matters, and a learned part of the same size
        policy.output.linear.weight.mul_(20.0)
        if prior == "per_label":
            policy.prior_scale.copy_(torch.linspace(0.2, 1.2, N_LABELS))
            policy.prior_offset.copy_(torch.linspace(-1.0, 1.0, N_LABELS))
        else:
            policy.prior_scale.fill_(0.3)
    return policy.eval()


def _scores() -> sp.csr_matrix:
    """7 documents' stored prior scores: row 5 stores 2 labels (fewer than M), row 6 none."""
    rng = np.random.default_rng(0)
    dense = rng.normal(size=(7, N_LABELS)).astype(np.float32)
    keep = rng.random((7, N_LABELS)) < 0.4
    keep[5] = False
    keep[5, [3, 17]] = True
    keep[6] = False
    rows, cols = np.nonzero(keep)
    return sp.csr_matrix((dense[rows, cols], (rows, cols)), shape=dense.shape)


def _X() -> sp.csr_matrix:
    text = sp.random(7, N_FEATURES, density=0.5, format="csr", dtype=np.float32, random_state=2)
    return with_prior_columns(text, prior_columns(_scores(), M))


def test_tracker_holds_each_documents_shortlist_and_its_exact_offsets() -> None:
    policy, X = _policy(), _X()
    tracker = document_shortlist(policy, X)
    allowed = shortlist_from_scores(_scores(), M).toarray()
    assert tracker.ids.shape == (7, M + 1) and (tracker.ids[:, -1] == STOP).all()
    for row in range(7):
        labels = [label for label in tracker.ids[row, :-1].tolist() if label != STOP]
        assert labels == np.flatnonzero(allowed[row]).tolist()
        assert tracker.mask[row].tolist() == [label == STOP for label in tracker.ids[row, :-1].tolist()] + [False]
    dense = policy.document_prior(X)
    assert dense is not None
    valid = tracker.ids[:, :-1] != STOP
    rows, columns = valid.nonzero(as_tuple=True)
    assert torch.equal(tracker.bias[rows, columns], dense.bias[rows, tracker.ids[rows, columns]])  # bit-exact
    assert (tracker.bias[~torch.cat([valid, torch.ones(7, 1, dtype=torch.bool)], 1)] == 0).all()


@pytest.mark.parametrize("prior", ["per_label", "shared"])
@pytest.mark.parametrize("suppress", [0, 3])
def test_greedy_compact_equals_dense(prior: str, suppress: int) -> None:
    policy, X = _policy(prior), _X()
    with torch.no_grad():
        compact = greedy_decode(policy, X, suppress_stop_steps=suppress)
        dense = greedy_decode(policy, X, suppress_stop_steps=suppress, compact=False)
    assert torch.equal(compact.actions, dense.actions)
    assert torch.equal(compact.set_lengths, dense.set_lengths)
    torch.testing.assert_close(compact.log_probs, dense.log_probs, atol=ATOL, rtol=0)
    torch.testing.assert_close(compact.values, dense.values, atol=ATOL, rtol=0)
    assert compact.first_probs.is_sparse and not dense.first_probs.is_sparse
    torch.testing.assert_close(compact.first_probs.to_dense(), dense.first_probs, atol=ATOL, rtol=0)
    assert compact.actions[6, 0].item() == STOP  # no shortlisted label: STOP at once, even suppressed
    if suppress:
        assert (compact.labels[5] >= 0).sum().item() == 2  # only its 2 labels exist
        assert (compact.n_labels_emitted[:5] >= suppress).all()


def test_beam_compact_equals_dense() -> None:
    policy, X = _policy(), _X()
    for suppress in (0, 2):
        compact = beam_search(policy, X, beam_width=3, suppress_stop_steps=suppress)
        dense = beam_search(policy, X, beam_width=3, suppress_stop_steps=suppress, compact=False)
        assert torch.equal(compact.actions, dense.actions)
        torch.testing.assert_close(compact.log_probs, dense.log_probs, atol=ATOL, rtol=0)
        torch.testing.assert_close(compact.first_probs.to_dense(), dense.first_probs, atol=ATOL, rtol=0)


def test_predict_is_compact_by_itself_and_ranks_as_dense() -> None:
    policy, X = _policy(), _X()
    assert compact_applies(policy, X) and compact_applies(policy, X.toarray())
    assert not compact_applies(_policy(shortlist=False), X)
    assert not compact_applies(policy, torch.as_tensor(X.toarray()))  # SB3's tensors keep the dense step
    sets, scores = predict(policy, X, score_steps=3)
    state = policy.initial_state(X)  # the dense reference, step by step through the public face
    with torch.no_grad():
        reference = greedy_decode(policy, X, suppress_stop_steps=3, compact=False)
        first, _, _ = policy.step(state, torch.full((7,), -1))
    from labelchain.agents.label_scores import position_scores

    np.testing.assert_allclose(scores, position_scores(reference.labels, N_LABELS, reference.first_probs), atol=ATOL)
    assert (scores.argmax(axis=1)[:6] == first[:6, :N_LABELS].argmax(dim=1).numpy()).all()
    assert sets.shape == (7, N_LABELS)


def test_teacher_forcing_compact_equals_dense_loss_and_gradients() -> None:
    policy, X = _policy(), _X()
    policy.train()
    allowed = shortlist_from_scores(_scores(), M).toarray()
    rng = np.random.default_rng(1)
    targets = np.full((7, 4), -1)
    for row in range(7):
        labels = rng.permutation(np.flatnonzero(allowed[row]))[:3].tolist()
        targets[row, : len(labels) + 1] = labels + [STOP]
    results = []
    for fused in (True, False):
        for compact in (True, False):
            policy.zero_grad()
            loss = teacher_forcing_loss(policy, X, targets, fused=fused, compact=compact)
            loss.backward()
            results.append((loss.detach(), policy.prior_scale.grad.clone(), policy.output.linear.weight.grad.clone()))
    for loss, scale_grad, weight_grad in results[1:]:
        torch.testing.assert_close(loss, results[0][0], atol=ATOL, rtol=0)
        torch.testing.assert_close(scale_grad, results[0][1], atol=ATOL, rtol=0)
        torch.testing.assert_close(weight_grad, results[0][2], atol=ATOL, rtol=0)
    # only the shortlisted labels' rows (and STOP's) receive a gradient
    touched = results[0][2].abs().sum(dim=1) > 0
    assert set(np.flatnonzero(touched.numpy())) <= set(np.flatnonzero(allowed.any(axis=0))) | {STOP}


def test_rescoring_compact_equals_dense_outside_labels_at_minus_infinity() -> None:
    policy, X = _policy(), _X()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        sampled = rollout(policy, X, sample=True, generator=generator, suppress_stop_steps=2)
        allowed = shortlist_from_scores(_scores(), M).toarray()
        for row, labels in enumerate(sampled.labels.tolist()):
            assert all(allowed[row, label] for label in labels if label >= 0)
        for actions in (sampled.actions, torch.tensor([[np.flatnonzero(~allowed[0])[0], STOP]] + [[STOP, -1]] * 6)):
            compact = sequence_log_probs(policy, X, actions, suppress_stop_steps=2)
            dense = sequence_log_probs(policy, X, actions, suppress_stop_steps=2, compact=False)
            for a, b in zip(compact, dense):
                torch.testing.assert_close(a, b, atol=ATOL, rtol=0)
        # the sampled chain's own log-probs are the re-scored ones (same distribution, compact draws)
        rescored = sequence_log_probs(policy, X, sampled.actions, suppress_stop_steps=2, compact=False)[0]
        torch.testing.assert_close(sampled.log_probs, rescored, atol=ATOL, rtol=0)
    assert compact[0][0, 0].item() == float("-inf")  # a label outside the shortlist, as the dense path has it


def test_rl_collector_fused_compact_equals_the_dense_step() -> None:
    """The collector's fused steps (agents.fused.FusedSteps) score the shortlist only: greedy chains and
    their log-probs as the unfused dense step; sampled chains stay in the shortlist, log-probs exact."""
    from labelchain.agents.learner_base import LearnerConfig
    from labelchain.agents.learners import make_learner
    from labelchain.envs.data.dataset import Split

    policy, X = _policy(), _X()
    allowed = shortlist_from_scores(_scores(), M).toarray()
    Y = sp.csr_matrix(allowed & (np.random.default_rng(4).random(allowed.shape) < 0.5))
    episodes = {}
    for fused in (True, False):
        learner = make_learner("rearrange", policy, Split(X, Y), LearnerConfig(seed=0, fused=fused))
        episodes[fused] = learner._sample_chains(np.arange(7), greedy=True)
        sampled = learner._sample_chains(np.arange(7), greedy=False)
        for row, labels in enumerate(sampled.actions.tolist()):
            assert all(allowed[row, label] for label in labels if 0 <= label < N_LABELS)
        with torch.no_grad():
            rescored = sequence_log_probs(policy, X, sampled.actions, compact=False)[0]
        torch.testing.assert_close(sampled.log_probs, rescored, atol=ATOL, rtol=0)
    from labelchain.agents.fused import FusedSteps

    assert FusedSteps(policy, policy.initial_state(X)).ids.shape == (7, M + 1)  # the compact step ran
    assert torch.equal(episodes[True].actions, episodes[False].actions)
    torch.testing.assert_close(episodes[True].log_probs, episodes[False].log_probs, atol=ATOL, rtol=0)
    torch.testing.assert_close(episodes[True].values, episodes[False].values, atol=ATOL, rtol=0)


def test_a_batch_of_documents_with_empty_shortlists_only_stops() -> None:
    """Row 6 stores no prior label: alone in a batch (a PPO minibatch can be) its compact tracker has
    width 0, STOP is its one action (log-prob 0, entropy 0), and a label costs -inf, as in the dense step."""
    policy, X = _policy(), _X()[[6, 6]]
    tracker = document_shortlist(policy, X)
    assert tracker.ids.tolist() == [[STOP], [STOP]] and tracker.mask.tolist() == [[False], [False]]
    actions = torch.tensor([[STOP, -1], [3, STOP]])
    with torch.no_grad():
        compact = sequence_log_probs(policy, X, actions)
        dense = sequence_log_probs(policy, X, actions, compact=False)
    assert compact[0][0].tolist() == [0.0, 0.0] and compact[0][1, 0].item() == float("-inf")
    assert compact[1][0].tolist() == [0.0, 0.0]
    torch.testing.assert_close(compact[0], dense[0], atol=ATOL, rtol=0)
