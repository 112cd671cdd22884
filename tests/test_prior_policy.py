"""A peer's prior inside the chain: columns built exactly, added exactly at every face, the shortlist
masked in every decoder and in teacher forcing, the fused passes equal to the plain ones."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from labelchain.agents.decoding import beam_search, greedy_decode, sequence_log_probs
from labelchain.agents.policy import PRIOR_GAIN, ChainPolicy
from labelchain.agents.prior_columns import (
    FLOOR,
    PRIOR_EPS,
    prior_columns,
    split_prior_columns,
    with_prior_columns,
)
from labelchain.envs.shortlist import shortlist_from_scores as shortlist_of
from labelchain.envs.shortlist import top_stored
from labelchain.agents.supervised import teacher_forcing_loss

N_FEATURES, N_LABELS = 12, 6
STOP = N_LABELS


def _scores() -> sp.csr_matrix:
    """4 documents' stored prior scores (chain units); row 2 ties labels 1 and 4; row 3 stores nothing."""
    dense = np.array(
        [
            [2.0, -1.0, np.nan, 0.5, np.nan, FLOOR - 3],
            [np.nan, 1.0, 3.0, np.nan, np.nan, np.nan],
            [np.nan, 0.0, -2.0, np.nan, 0.0, np.nan],
            [np.nan] * 6,
        ]
    )
    rows, cols = np.nonzero(~np.isnan(dense))
    return sp.csr_matrix((dense[rows, cols].astype(np.float32), (rows, cols)), shape=dense.shape)


def test_top_stored_shortlist_and_columns_exact() -> None:
    scores = _scores()
    kept = top_stored(scores, 2)
    assert kept.indptr.tolist() == [0, 2, 4, 6, 6] and kept.indices.tolist() == [0, 3, 1, 2, 1, 4]
    assert kept.data.tolist() == [2.0, 0.5, 1.0, 3.0, 0.0, 0.0]  # stored zeros stay stored
    shortlist = shortlist_of(scores, 2).toarray()
    assert shortlist.tolist() == [
        [True, False, False, True, False, False],
        [False, True, True, False, False, False],
        [False, True, False, False, True, False],  # the tie keeps the lower ids 1 and 4 over -2.0 at 2
        [False] * 6,
    ]
    columns = prior_columns(scores).toarray()
    assert columns[0, 0] == pytest.approx(2.0 - FLOOR)
    assert columns[0, 5] == pytest.approx(PRIOR_EPS)  # below the floor: still stored, at the floor
    assert columns[0, 2] == 0.0 and columns[3].sum() == 0.0
    assert ((prior_columns(scores, 2).toarray() > 0) == shortlist).all()
    with pytest.raises(ValueError, match="shortlist size M=0"):
        top_stored(scores, 0)


def _pair(prior: str = "shared", shortlist: bool = False, **extra):
    torch.manual_seed(0)
    plain = ChainPolicy(N_FEATURES, N_LABELS, hidden_size=16, label_embed_size=8, dropout=0.0, **extra).eval()
    torch.manual_seed(0)
    with_prior = ChainPolicy(
        N_FEATURES, N_LABELS, hidden_size=16, label_embed_size=8, dropout=0.0, prior=prior, shortlist=shortlist, **extra
    ).eval()
    return plain, with_prior


def _X() -> sp.csr_matrix:
    return sp.random(4, N_FEATURES, density=0.5, format="csr", dtype=np.float32, random_state=1)


def test_prior_is_added_exactly_at_every_face() -> None:
    plain, policy = _pair("per_label")
    with torch.no_grad():
        policy.prior_scale.copy_(torch.linspace(0.5, 1.5, N_LABELS) / PRIOR_GAIN)
        policy.prior_offset.copy_(torch.arange(N_LABELS, dtype=torch.float32) / 10 / PRIOR_GAIN)
    X, scores = _X(), _scores()
    X_prior = with_prior_columns(X, prior_columns(scores))
    prior = FLOOR + prior_columns(scores).toarray()
    expected_bias = np.linspace(0.5, 1.5, N_LABELS) * prior + np.arange(N_LABELS) / 10
    assert torch.allclose(policy.prior_weights()[0], torch.linspace(0.5, 1.5, N_LABELS))
    targets = torch.tensor([[3, 1, STOP], [0, STOP, -1], [STOP, -1, -1], [2, 4, STOP]])
    plain_logits, _ = plain.sequence_logits(X, targets)
    prior_logits, _ = policy.sequence_logits(X_prior, targets)
    difference = (prior_logits - plain_logits).detach().numpy()
    for t in range(3):
        np.testing.assert_allclose(difference[:, t, :N_LABELS], expected_bias, atol=1e-5)
        np.testing.assert_allclose(difference[:, t, STOP], 0.0, atol=1e-6)
    state = policy.initial_state(X_prior)
    step_logits, _, _ = policy.step(state, torch.full((4,), -1))
    np.testing.assert_allclose(step_logits.detach().numpy(), prior_logits[:, 0].detach().numpy(), atol=1e-5)
    prefix, _ = policy.prefix_logits(X_prior, torch.tensor([[3], [0], [-1], [2]]))
    np.testing.assert_allclose(
        prefix[[0, 1, 3]].detach().numpy(), prior_logits[[0, 1, 3], 1].detach().numpy(), atol=1e-5
    )
    with pytest.raises(ValueError, match="prior columns"):
        policy.initial_state(X)  # text features alone: one line naming both widths


def test_shortlist_is_masked_in_every_decoder_and_in_teacher_forcing() -> None:
    _, policy = _pair("shared", shortlist=True)
    X_prior = with_prior_columns(_X(), prior_columns(_scores(), 2))
    allowed = shortlist_of(_scores(), 2).toarray()
    logits, _, _ = policy.step(policy.initial_state(X_prior), torch.full((4,), -1))
    assert torch.isinf(logits[:, :N_LABELS][torch.from_numpy(~allowed)]).all()
    decodes = [greedy_decode(policy, X_prior, suppress_stop_steps=3), beam_search(policy, X_prior, beam_width=3)]
    generator = torch.Generator().manual_seed(0)
    from labelchain.agents.decoding import rollout

    decodes += [rollout(policy, X_prior, sample=True, generator=generator) for _ in range(20)]
    for result in decodes:
        for row, labels in enumerate(result.labels.tolist()):
            emitted = [label for label in labels if 0 <= label < N_LABELS]
            assert all(allowed[row, label] for label in emitted), (row, emitted)
    # STOP suppression counts only shortlisted labels: row 3 has none, so it stops at once
    suppressed = greedy_decode(policy, X_prior, suppress_stop_steps=3)
    assert suppressed.actions[3, 0].item() == STOP
    assert (suppressed.labels[:2] >= 0).sum(dim=1).tolist() == [2, 2]
    # teacher forcing normalises over the shortlist only
    targets = torch.tensor([[3, STOP], [2, STOP], [4, STOP], [STOP, -1]])
    log_p, _, _ = sequence_log_probs(policy, X_prior, targets)
    full, _ = policy.sequence_logits(X_prior, targets)
    expected = torch.log_softmax(full[:, 0], dim=-1).gather(1, targets[:, :1]).squeeze(1)
    torch.testing.assert_close(log_p[:, 0], expected, atol=1e-5, rtol=0)
    assert torch.isfinite(log_p).all()


def test_fused_passes_equal_the_plain_ones_with_a_prior() -> None:
    _, policy = _pair("per_label", shortlist=True)
    policy.train()
    X_prior = with_prior_columns(_X(), prior_columns(_scores(), 3))
    targets = torch.tensor([[3, 0, STOP], [2, STOP, -1], [4, 1, STOP], [STOP, -1, -1]])
    fused = teacher_forcing_loss(policy, X_prior, targets, fused=True)
    plain = teacher_forcing_loss(policy, X_prior, targets, fused=False)
    torch.testing.assert_close(fused, plain, atol=1e-5, rtol=0)
    fused.backward()
    assert policy.prior_scale.grad is not None and policy.prior_scale.grad.abs().sum() > 0


def test_without_label_history_the_chain_never_sees_what_it_emitted() -> None:
    _, policy = _pair("shared", label_history=False)
    X_prior = with_prior_columns(_X(), prior_columns(_scores()))
    state = policy.initial_state(X_prior)
    after_a, _, _ = policy.step(state, torch.tensor([0, 1, 2, 3]))
    after_b, _, _ = policy.step(state, torch.tensor([5, 4, 3, 2]))
    torch.testing.assert_close(after_a, after_b)
    _, with_history = _pair("shared")
    with_history.load_state_dict(policy.state_dict())
    state = with_history.initial_state(X_prior)
    assert not torch.allclose(
        with_history.step(state, torch.tensor([0, 1, 2, 3]))[0], with_history.step(state, torch.tensor([5, 4, 3, 2]))[0]
    )


def test_prior_policy_saves_and_loads(tmp_path) -> None:
    _, policy = _pair("per_label", shortlist=True, label_history=False)
    with torch.no_grad():
        policy.prior_scale.mul_(2.0)
    policy.save(tmp_path)
    loaded = ChainPolicy.load(tmp_path).eval()
    assert loaded.config == policy.config
    assert loaded.config["prior"] == "per_label" and loaded.config["shortlist"] is True
    assert loaded.config["label_history"] is False
    X_prior = with_prior_columns(_X(), prior_columns(_scores(), 2))
    torch.testing.assert_close(
        loaded.sequence_logits(X_prior, torch.tensor([[STOP]] * 4))[0],
        policy.sequence_logits(X_prior, torch.tensor([[STOP]] * 4))[0],
    )


def test_bad_prior_configurations_are_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match="prior must be one of"):
        ChainPolicy(N_FEATURES, N_LABELS, prior="both")
    with pytest.raises(ValueError, match="shortlist needs a prior"):
        ChainPolicy(N_FEATURES, N_LABELS, shortlist=True)
    with pytest.raises(ValueError, match="needs output='flat'"):
        ChainPolicy(N_FEATURES, N_LABELS, prior="shared", n_clusters=2)
    text, columns = split_prior_columns(np.ones((2, N_FEATURES + N_LABELS)), N_FEATURES, N_LABELS)
    assert text.shape == (2, N_FEATURES) and columns.shape == (2, N_LABELS)


def test_one_shortlist_mask_in_the_policy_both_envs_and_the_rl_collector() -> None:
    """The policy's blocked labels (from its prior columns), the single and the vector env's masks (from
    the shortlist of the same scores) and the collector's task agree at every step of greedy chains."""
    from labelchain.agents.learner_base import LearnerConfig
    from labelchain.agents.learners import make_learner
    from labelchain.envs import LabelChainEnv, LabelChainVectorEnv
    from labelchain.envs.chain_task import ChainTask
    from labelchain.envs.data.dataset import Split
    from labelchain.envs.shortlist import allowed_actions
    from gymnasium.vector import AutoresetMode

    _, policy = _pair("shared", shortlist=True)
    scores, m = _scores(), 2
    X_prior = with_prior_columns(_X(), prior_columns(scores, m))
    shortlist = shortlist_of(scores, m)
    Y = sp.csr_matrix(np.array([[1, 0, 0, 1, 0, 0], [0, 0, 1, 0, 0, 0], [0, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1]], bool))
    task = ChainTask(Split(X_prior, Y), N_LABELS, max_steps=N_LABELS + 1, shortlist=shortlist)
    single, vector = LabelChainEnv(task), LabelChainVectorEnv(4, task, autoreset_mode=AutoresetMode.DISABLED)
    vector.reset(options={"doc_indices": np.arange(4)})
    state = policy.initial_state(X_prior)
    emitted = policy.new_emitted(state)
    result = greedy_decode(policy, X_prior)
    for doc in range(4):
        single.reset(options={"doc_index": doc})
        for action in result.actions[doc].tolist():
            if action < 0:
                break
            assert (
                single.action_masks() == allowed_actions(emitted.mask[doc, :N_LABELS].numpy(), shortlist[doc])
            ).all()
            assert (~emitted.mask[doc].numpy() == single.action_masks()).all()  # the policy's view
            single.step(action)
            if action < N_LABELS:
                emitted.mask[doc, action] = True
    assert (vector.action_masks() == ~policy.new_emitted(state).mask.numpy()).all()
    learner = make_learner("rearrange", policy, Split(X_prior, Y), LearnerConfig(seed=0))
    assert learner.task.shortlist is not None and (learner.task.shortlist != shortlist).nnz == 0


def test_stop_offset_moves_only_stop_and_makes_sets_shorter_or_longer() -> None:
    _, policy = _pair("shared")
    X_prior = with_prior_columns(_X(), prior_columns(_scores()))
    targets = torch.tensor([[STOP]] * 4)
    before = policy.sequence_logits(X_prior, targets)[0]
    policy.stop_offset = 2.5
    after = policy.sequence_logits(X_prior, targets)[0]
    torch.testing.assert_close(after[..., :STOP], before[..., :STOP])
    torch.testing.assert_close(after[..., STOP], before[..., STOP] + 2.5)
    lengths = []
    for offset in (-30.0, 0.0, 30.0):
        policy.stop_offset = offset
        lengths.append(int((greedy_decode(policy, X_prior).labels >= 0).sum()))
    assert lengths[0] >= lengths[1] >= lengths[2] and lengths[2] == 0 and lengths[0] == 4 * N_LABELS


def test_a_stop_offset_reaches_a_flat_policy_without_a_prior_too() -> None:
    plain, _ = _pair("shared")
    X = _X()
    before = plain.sequence_logits(X, torch.tensor([[STOP]] * 4))[0]
    plain.stop_offset = -1.5
    after = plain.sequence_logits(X, torch.tensor([[STOP]] * 4))[0]
    torch.testing.assert_close(after[..., STOP], before[..., STOP] - 1.5)
    torch.testing.assert_close(after[..., :STOP], before[..., :STOP])
    plain.stop_offset = -50.0
    assert int((greedy_decode(plain, X).labels >= 0).sum()) == 4 * N_LABELS


def test_decode_chain_outputs_feed_the_rules_and_restore_the_policy() -> None:
    from labelchain.agents.chain_rules import choose_rules
    from labelchain.agents.rule_outputs import decode_chain_outputs

    _, policy = _pair("shared", shortlist=True)
    X_prior = with_prior_columns(_X(), prior_columns(_scores(), 2))
    outputs = decode_chain_outputs(policy, X_prior, offsets=(-40.0, 40.0), n_samples=3)
    assert sorted(outputs.sets_by_offset) == [-40.0, 0.0, 40.0] and policy.stop_offset == 0.0
    assert outputs.sets_by_offset[40.0].nnz == 0  # STOP first everywhere
    assert (outputs.sets_by_offset[-40.0].toarray() == shortlist_of(_scores(), 2).toarray()).all()  # all shortlisted
    np.testing.assert_allclose(outputs.prior, FLOOR + prior_columns(_scores(), 2).toarray(), atol=1e-5)
    assert outputs.marginals is not None and outputs.marginals.shape == (4, N_LABELS)
    Y = sp.csr_matrix(np.eye(4, N_LABELS, dtype=bool))
    chosen = choose_rules(outputs, Y)
    assert chosen.apply(outputs)[0].shape == (4, N_LABELS)


@pytest.mark.parametrize(
    "name", ["freq2rare", "rare2freq", "fixed_random", "always_random", "rearrange", "reinforce", "ppo", "combined"]
)
def test_every_learner_trains_a_shortlisted_prior_chain_inside_its_shortlist(name: str) -> None:
    """All eight learners train the prior chain: their losses stay finite (a teacher-forced target the
    shortlist blocked would cost inf), the prior's a and b move, and no chain they sample leaves a
    document's shortlist (documents with an empty shortlist only STOP)."""
    from labelchain.agents.learner_base import LearnerConfig
    from labelchain.agents.learners import LEARNERS, make_learner
    from labelchain.envs.data.dataset import Split

    assert name in LEARNERS and len(LEARNERS) == 8
    _, policy = _pair("shared", shortlist=True)
    policy.train()
    scores, m = _scores(), 2
    X_prior = with_prior_columns(_X(), prior_columns(scores, m))
    shortlist = shortlist_of(scores, m)
    gold = sp.csr_matrix(
        np.array([[1, 0, 0, 1, 0, 1], [0, 1, 1, 0, 0, 0], [0, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1]], bool)
    )
    Y = sp.csr_matrix(gold.multiply(shortlist).astype(bool))  # what setup.with_prior keeps: the matcher's recall
    assert Y[3].nnz == 0 and Y[0].nnz == 2
    learner = make_learner(name, policy, Split(X_prior, Y), LearnerConfig(seed=0, batch_size=4))
    sampled: list[tuple[np.ndarray, torch.Tensor]] = []
    rollout = learner.collector.rollout

    def recording_rollout(*args, **kwargs):
        episodes = rollout(*args, **kwargs)
        sampled.append((np.asarray(episodes.rows), episodes.actions.detach().clone()))
        return episodes

    learner.collector.rollout = recording_rollout  # type: ignore[method-assign]
    a_b_before = [p.detach().clone() for p in policy.prior_weights()]
    for _ in range(3):
        scalars = learner.update(np.arange(4))
        assert all(np.isfinite(v) for v in scalars.values()), scalars
    assert any(not torch.equal(before, after.detach()) for before, after in zip(a_b_before, policy.prior_weights()))
    assert sampled  # every learner rolls chains out (its charts; rearrangement's and RL's targets)
    allowed = shortlist.toarray().astype(bool)
    for rows, actions in sampled:
        for doc, row in zip(rows.tolist(), actions.tolist()):
            labels = [a for a in row if 0 <= a < N_LABELS]
            assert all(allowed[doc, a] for a in labels), (name, doc, row)


def test_shortlist_in_columns_stays_sparse_and_equals_the_dense_rule() -> None:
    """The learners' shortlist from sparse feature rows: exactly the dense rule (column > 0), with
    repeated entries summed, explicit zeros and negatives out, and no dense (n, L) block on the way."""
    import tracemalloc

    from labelchain.agents.prior_columns import shortlist_in_columns

    n_features, n_labels = 2, 4
    rows = [0, 0, 0, 1, 1, 1, 2, 2, 2]  # three stored entries a document
    cols = [1, 2, 2, 3, 4, 5, 2, 3, 3]  # columns 2.. are labels 0..3; (0, 2) and (2, 3) repeat
    vals = [9.0, 0.5, 0.25, 0.0, -1.0, 2.0, 7.0, 1.0, -1.0]  # (1, 3) explicit 0, (1, 4) negative, (2, 3) sums to 0
    X = sp.csr_matrix(  # built from (data, indices, indptr): the repeats stay stored twice
        (np.array(vals, dtype=np.float32), np.array(cols), np.array([0, 3, 6, 9])), shape=(3, n_features + n_labels)
    )
    assert X.nnz == len(rows)
    sparse = shortlist_in_columns(X, n_features, n_labels)
    dense = shortlist_in_columns(X.toarray(), n_features, n_labels)
    assert sparse.dtype == bool and sparse.toarray().tolist() == dense.toarray().tolist()
    assert sparse.toarray().tolist() == [
        [True, False, False, False],
        [False, False, False, True],
        [True, False, False, False],
    ]
    with pytest.raises(ValueError, match="a prior policy expects 2 text features"):
        shortlist_in_columns(X[:, :5], n_features, n_labels)
    # 64 documents x 200,000 labels, 10 stored each: a dense float32 block would be 51 MB
    big_labels, docs = 200_000, 64
    rng = np.random.default_rng(0)
    stored = np.sort(rng.choice(big_labels, size=(docs, 10), replace=False), axis=1) + n_features
    big = sp.csr_matrix(
        (np.ones(stored.size, dtype=np.float32), stored.ravel(), np.arange(0, stored.size + 1, 10)),
        shape=(docs, n_features + big_labels),
    )
    tracemalloc.start()
    try:
        shortlist = shortlist_in_columns(big, n_features, big_labels)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert shortlist.nnz == stored.size and peak < 5_000_000
