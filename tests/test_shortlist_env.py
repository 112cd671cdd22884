"""Shortlist masks on the env side: the one rule (`envs.shortlist.allowed_actions`) exactly, and the
same masks in LabelChainEnv, LabelChainVectorEnv (both mask modes) and SB3's MaskablePPO rollouts."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import scipy.sparse as sp
from gymnasium.vector import AutoresetMode

import labelchain.envs as envs
from labelchain.agents.prior import recall_at
from labelchain.envs import LabelChainEnv, LabelChainVectorEnv
from labelchain.envs.chain_task import make_task
from labelchain.envs.data.dataset import Dataset, Split
from labelchain.envs.mcg import MCGSpec, emitted_mask
from labelchain.envs.shortlist import allowed_actions, check_shortlist_matrix, shortlist_from_scores

L, STOP = 5, 5
# 3 documents, 5 labels. Gold: doc 0 {0, 1}, doc 1 {1, 3}, doc 2 {2}.
# Shortlist: doc 0 {0, 2, 4} (gold 1 is outside: recall lost), doc 1 {1, 3}, doc 2 {} (STOP only).
GOLD = [[0, 1], [1, 3], [2]]
SHORT = np.array([[1, 0, 1, 0, 1], [0, 1, 0, 1, 0], [0, 0, 0, 0, 0]], dtype=bool)


def _labels(sets: list[list[int]]) -> sp.csr_matrix:
    Y = np.zeros((len(sets), L), dtype=bool)
    for row, ids in enumerate(sets):
        Y[row, ids] = True
    return sp.csr_matrix(Y)


@pytest.fixture
def three_docs() -> Dataset:
    X = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.float32)
    split = Split(X, _labels(GOLD))
    return Dataset("three", split, Split(X.copy(), _labels(GOLD)), [f"l{i}" for i in range(L)], ["x", "y"])


# ---------------------------------------------------------------------- the rule itself
def test_allowed_actions_hand_made() -> None:
    # Emitted: doc 0 {2}, doc 1 {}, doc 2 {3} (outside its shortlist: the rule still says no).
    emitted = np.zeros((3, L), dtype=bool)
    emitted[0, 2] = emitted[2, 3] = True
    expected = np.array(
        [
            [1, 0, 0, 0, 1, 1],  # doc 0: shortlist {0, 2, 4} minus emitted 2; STOP
            [0, 1, 0, 1, 0, 1],  # doc 1: shortlist {1, 3}; STOP
            [0, 0, 0, 0, 0, 1],  # doc 2: empty shortlist, STOP only
        ],
        dtype=bool,
    )
    with_stop = np.hstack([emitted, np.ones((3, 1), dtype=bool)])  # an emitted STOP column is ignored
    for marks in (emitted, with_stop):
        for rows in (SHORT, sp.csr_matrix(SHORT), SHORT.astype(np.int8)):
            out = allowed_actions(marks, rows)
            assert out.dtype == bool and out.shape == (3, L + 1)
            np.testing.assert_array_equal(out, expected)
    # One document at a time: 1-D in, 1-D out.
    np.testing.assert_array_equal(allowed_actions(emitted[0], SHORT[0]), expected[0])
    np.testing.assert_array_equal(allowed_actions(emitted[1], sp.csr_matrix(SHORT[1:2])), expected[1])
    # A fresh array: writing into it changes neither input.
    out = allowed_actions(emitted, SHORT)
    out[:] = False
    assert SHORT[0, 0] and not emitted[0, 0]


def test_allowed_actions_refuses_misfit_shapes() -> None:
    with pytest.raises(ValueError, match=r"emitted mask \(2, 5\) does not fit shortlist rows \(3, 5\)"):
        allowed_actions(np.zeros((2, L), bool), SHORT)
    with pytest.raises(ValueError, match=r"emitted mask \(3, 7\) does not fit"):
        allowed_actions(np.zeros((3, 7), bool), SHORT)


def test_check_shortlist_matrix_accepts_sparse_and_dense_forms() -> None:
    expected = sp.csr_matrix(SHORT)
    coo = sp.coo_matrix(SHORT.astype(np.float32))
    with_stored_zero = sp.csr_matrix((np.array([1, 0, 1]), np.array([0, 1, 2]), np.array([0, 2, 3, 3])), shape=(3, L))
    for form in (
        SHORT,
        SHORT.astype(np.int64),
        SHORT.astype(np.float64),
        coo,
        sp.csr_matrix(SHORT),
        sp.csc_matrix(SHORT),
    ):
        out = check_shortlist_matrix(form, 3, L)
        assert isinstance(out, sp.csr_matrix) and out.dtype == bool and out.has_sorted_indices
        assert (out != expected).nnz == 0
    out = check_shortlist_matrix(with_stored_zero, 3, L)  # a stored 0 is not a shortlisted label
    assert out.nnz == 2 and out[0].indices.tolist() == [0] and out[1].indices.tolist() == [2]


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.ones(L, bool), r"shortlist: must be a 2-D \(documents, labels\) matrix, got shape \(5,\)"),
        (np.ones((3, L, 1), bool), r"must be a 2-D .* got shape \(3, 5, 1\)"),
        (np.ones((2, L), bool), r"shortlist: shape \(2, 5\), expected \(3 documents, 5 labels\)"),
        (sp.csr_matrix(np.ones((3, 4))), r"shape \(3, 4\), expected \(3 documents, 5 labels\)"),
        (np.full((3, L), 0.5), r"entries must be bool or 0/1, found 0.5 \(scores\?"),
        (sp.csr_matrix(np.full((3, L), -2.0)), r"entries must be bool or 0/1, found -2.0"),
        (np.full((3, L), np.nan), r"entries must be bool or 0/1, found nan"),
        (np.full((3, L), "a"), r"entries must be bool or 0/1, got dtype <U1"),
    ],
)
def test_check_shortlist_matrix_one_line_errors(bad, message) -> None:
    with pytest.raises(ValueError, match=message) as error:
        check_shortlist_matrix(bad, 3, L)
    assert "\n" not in str(error.value)


def test_shortlist_from_scores_is_the_top_m_recall_at_measures() -> None:
    # Row 0: scores 0.5 (l0), 2.0 (l1), 2.0 (l3), -1 (l4): top 2 = l1, l3 (tie kept by lower id first).
    # Row 1: one stored entry (fewer than M: kept). Row 2: nothing stored. Row 3: a stored 0 is a score.
    scores = sp.csr_matrix(
        (
            np.array([0.5, 2.0, 2.0, -1.0, -3.0, 0.0, -5.0]),
            np.array([0, 1, 3, 4, 2, 4, 0]),
            np.array([0, 4, 5, 5, 7]),
        ),
        shape=(4, L),
    )
    top2 = shortlist_from_scores(scores, 2)
    assert [top2[r].indices.tolist() for r in range(4)] == [[1, 3], [2], [], [0, 4]]
    top1 = shortlist_from_scores(scores, 1)
    assert [top1[r].indices.tolist() for r in range(4)] == [[1], [2], [], [4]]  # ties to the lower id
    Y = _labels([[3, 0], [2], [1], [0]])
    for m, short in ((1, top1), (2, top2)):
        kept = Y.multiply(short).nnz
        assert recall_at(scores, Y, m) == pytest.approx(kept / Y.nnz)
    with pytest.raises(ValueError, match="shortlist size M=0 must be a whole number >= 1"):
        shortlist_from_scores(scores, 0)
    assert scores.indices.tolist() == [0, 1, 3, 4, 2, 4, 0]  # the caller's matrix is never reordered


# ---------------------------------------------------------------------- the task
def test_task_checks_the_shortlist_and_refuses_mcg(three_docs: Dataset) -> None:
    task = make_task(three_docs, shortlist=SHORT)
    assert isinstance(task.shortlist, sp.csr_matrix) and task.shortlist.dtype == bool
    assert task.in_shortlist(np.array([0, 0, 1, 2, 1]), np.array([0, 1, 3, 0, 4])).tolist() == [
        True,
        False,
        True,
        False,
        False,
    ]
    assert make_task(three_docs).in_shortlist(np.array([2]), np.array([4])).tolist() == [True]
    with pytest.raises(ValueError, match=r"shortlist: shape \(2, 5\), expected \(3 documents, 5 labels\)"):
        LabelChainEnv(three_docs, shortlist=SHORT[:2])
    with pytest.raises(ValueError, match=r"shortlist: shape \(3, 4\)"):
        LabelChainVectorEnv(2, three_docs, shortlist=SHORT[:, :4])
    spec = MCGSpec.from_assignment(np.array([0, 0, 1, 1, 1]), 2)
    with pytest.raises(ValueError, match="shortlist: not with mcg"):
        make_task(three_docs, mcg=spec, shortlist=np.ones((3, 7), bool))
    with pytest.raises(ValueError, match="a ready ChainTask carries its own shortlist"):
        LabelChainEnv(make_task(three_docs), shortlist=SHORT)
    assert LabelChainEnv(task, shortlist=task.shortlist).task is task


def test_gym_make_passes_the_shortlist_to_both_envs(three_docs: Dataset) -> None:
    single = gym.make(envs.ENV_ID, dataset=three_docs, shortlist=SHORT)
    single.reset(options={"doc_index": 2})
    assert single.unwrapped.action_masks().tolist() == [False] * L + [True]
    vec = gym.make_vec(
        envs.ENV_ID, num_envs=3, vectorization_mode="vector_entry_point", dataset=three_docs, shortlist=SHORT
    )
    _, info = vec.reset(options={"doc_indices": [0, 1, 2]})
    np.testing.assert_array_equal(info["action_mask"], allowed_actions(np.zeros((3, L), bool), SHORT))


# ---------------------------------------------------------------------- the envs agree with the rule
# Scripted episodes per document: shortlisted labels, repeats, out-of-shortlist labels, then STOP.
SCRIPTS = {0: [1, 0, 3, 0, 2, 4, STOP], 1: [1, 0, 4, 1, 3, STOP], 2: [0, 2, 4, STOP]}


def expected_mask(doc: int, history: np.ndarray) -> np.ndarray:
    return allowed_actions(emitted_mask(history[None], L), SHORT[doc : doc + 1])[0]


@pytest.mark.parametrize("dense_masks", [True, False])
def test_single_env_masks_equal_the_rule_at_every_step(three_docs: Dataset, dense_masks: bool) -> None:
    env = LabelChainEnv(three_docs, shortlist=SHORT, max_steps=8, dense_masks=dense_masks)
    for doc, script in SCRIPTS.items():
        obs, info = env.reset(options={"doc_index": doc})
        for action in script:
            np.testing.assert_array_equal(env.action_masks(), expected_mask(doc, obs["history"]))
            if dense_masks:
                np.testing.assert_array_equal(info["action_mask"], env.action_masks())
            obs, _, terminated, truncated, info = env.step(action)
        assert terminated and not truncated
        emitted = set(obs["history"][obs["history"] < L].tolist())
        assert emitted <= set(np.flatnonzero(SHORT[doc]).tolist())  # nothing outside the shortlist


@pytest.mark.parametrize("dense_masks", [True, False])
def test_vector_env_masks_equal_the_rule_at_every_step(three_docs: Dataset, dense_masks: bool) -> None:
    docs = np.array(list(SCRIPTS))
    vec = LabelChainVectorEnv(
        3, three_docs, shortlist=SHORT, max_steps=8, dense_masks=dense_masks, autoreset_mode=AutoresetMode.DISABLED
    )
    obs, info = vec.reset(options={"doc_indices": docs})
    for t in range(max(len(s) for s in SCRIPTS.values())):
        expected = allowed_actions(emitted_mask(obs["history"], L), SHORT[docs])
        np.testing.assert_array_equal(vec.action_masks(), expected)
        if dense_masks:
            np.testing.assert_array_equal(info["action_mask"], expected)
        actions = np.array([s[t] if t < len(s) else STOP for s in SCRIPTS.values()])
        obs, *_, info = vec.step(actions)
    for doc in docs:
        emitted = set(obs["history"][doc][obs["history"][doc] < L].tolist())
        assert emitted <= set(np.flatnonzero(SHORT[doc]).tolist())


def run(env, doc: int, actions: list[int]) -> tuple[list, list]:
    """(rewards, (history, step, terminated, truncated) per step) of one scripted episode."""
    env.reset(options={"doc_index": doc})
    rewards, trace = [], []
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(action)
        rewards.append(reward)
        trace.append((obs["history"].tolist(), int(obs["step"]), terminated, truncated))
    return rewards, trace


def run_vec(vec: LabelChainVectorEnv, doc: int, actions: list[int]) -> tuple[list, list]:
    vec.reset(options={"doc_indices": [doc]})
    rewards, trace = [], []
    for action in actions:
        obs, reward, terminated, truncated, _ = vec.step(np.array([action]))
        rewards.append(float(reward[0]))
        trace.append((obs["history"][0].tolist(), int(obs["step"][0]), bool(terminated[0]), bool(truncated[0])))
    return rewards, trace


@pytest.mark.parametrize("dense_masks", [True, False])
def test_an_out_of_shortlist_action_is_a_wasted_step_like_a_repeat(three_docs: Dataset, dense_masks: bool) -> None:
    # Doc 0 (gold {0, 1}, shortlist {0, 2, 4}): a second 0 (repeat) and label 1 (outside) do the same.
    repeat, outside = [0, 0, 2, STOP], [0, 1, 2, STOP]
    single = LabelChainEnv(three_docs, shortlist=SHORT, max_steps=6, dense_masks=dense_masks)
    vec = LabelChainVectorEnv(
        1, three_docs, shortlist=SHORT, max_steps=6, dense_masks=dense_masks, autoreset_mode=AutoresetMode.DISABLED
    )
    for runner, env in ((run, single), (run_vec, vec)):
        rewards, trace = runner(env, 0, outside)
        assert (rewards, trace) == runner(env, 0, repeat)
        # Delta F1 after {0}: 2/3; the wasted step pays 0; {0, 2}: 2*1/(2+2) = 1/2; STOP 0.
        assert rewards == pytest.approx([2 / 3, 0.0, 0.5 - 2 / 3, 0.0])
        assert [step[:2] for step in trace] == [
            ([0, L, L, L, L, L], 1),
            ([0, L, L, L, L, L], 2),  # nothing emitted, the step counter advanced
            ([0, 2, L, L, L, L], 3),
            ([0, 2, L, L, L, L], 4),
        ]
    # Doc 2's shortlist is empty: every label is wasted; its gold {2} is recall lost (F1 0 whatever is done).
    rewards, trace = run(single, 2, [2, 0, STOP])
    assert rewards == [0.0, 0.0, 0.0] and trace[-1][0] == [L] * 6 and trace[-1][2]


def test_a_full_shortlist_changes_nothing(three_docs: Dataset) -> None:
    """Every label shortlisted: the same observations, rewards and masks as no shortlist at all."""
    rng = np.random.default_rng(0)
    kwargs = dict(max_steps=6, autoreset_mode=AutoresetMode.DISABLED)
    plain = LabelChainVectorEnv(6, three_docs, **kwargs)
    full = LabelChainVectorEnv(6, three_docs, shortlist=np.ones((3, L), bool), **kwargs)
    lazy = LabelChainVectorEnv(6, three_docs, shortlist=np.ones((3, L), bool), dense_masks=False, **kwargs)
    docs = np.array([0, 1, 2, 0, 1, 2])
    outs = [env.reset(options={"doc_indices": docs}) for env in (plain, full, lazy)]
    for _ in range(6):
        np.testing.assert_array_equal(outs[0][-1]["action_mask"], outs[1][-1]["action_mask"])
        np.testing.assert_array_equal(plain.action_masks(), lazy.action_masks())
        actions = rng.integers(0, L + 1, size=6)  # masked actions too
        outs = [env.step(actions) for env in (plain, full, lazy)]
        for other in outs[1:]:
            np.testing.assert_array_equal(outs[0][0]["history"], other[0]["history"])
            np.testing.assert_array_equal(outs[0][1], other[1])


def test_dense_and_lazy_vector_masks_agree_on_random_play(three_docs: Dataset) -> None:
    """Random actions (masked ones included) with autoreset: both mask modes give the same episodes."""
    rng = np.random.default_rng(1)
    dense = LabelChainVectorEnv(4, three_docs, shortlist=SHORT, max_steps=4)
    lazy = LabelChainVectorEnv(4, three_docs, shortlist=SHORT, max_steps=4, dense_masks=False)
    a, b = dense.reset(seed=3), lazy.reset(seed=3)
    for _ in range(40):
        np.testing.assert_array_equal(dense.action_masks(), lazy.action_masks())
        np.testing.assert_array_equal(
            dense.action_masks(), allowed_actions(emitted_mask(a[0]["history"], L), SHORT[a[-1]["doc_index"]])
        )
        actions = rng.integers(0, L + 1, size=4)
        a, b = dense.step(actions), lazy.step(actions)
        np.testing.assert_array_equal(a[0]["history"], b[0]["history"])
        np.testing.assert_array_equal(a[1], b[1])
        np.testing.assert_array_equal(a[-1]["doc_index"], b[-1]["doc_index"])


# ---------------------------------------------------------------------- SB3
def test_maskable_ppo_never_leaves_the_shortlist(three_docs: Dataset) -> None:
    from labelchain.agents.sb3_adapter import make_maskable_ppo

    env = LabelChainEnv(three_docs, shortlist=SHORT, max_steps=6)
    tiny = dict(n_steps=64, batch_size=32, n_epochs=1, device="cpu")
    model = make_maskable_ppo(env, {"hidden_size": 8, "label_embed_size": 4}, seed=0, **tiny)
    model.learn(64)
    buffer = model.rollout_buffer
    histories = buffer.observations["history"].reshape(-1, env.task.max_steps).astype(np.int64)
    actions = buffer.actions.reshape(-1).astype(np.int64)
    masks = buffer.action_masks.reshape(len(actions), -1).astype(bool)
    # Which document each rollout step saw: features are distinct per document here.
    features = buffer.observations["features"].reshape(len(actions), -1)
    docs = np.array([int(np.flatnonzero((three_docs.train.X == row).all(axis=1))[0]) for row in features])
    np.testing.assert_array_equal(masks, allowed_actions(emitted_mask(histories, L), SHORT[docs]))
    labels = actions < L
    assert labels.any() and SHORT[docs[labels], actions[labels]].all()
    # predict() with the env's masks stays inside too.
    for doc in range(3):
        obs, _ = env.reset(options={"doc_index": doc})
        action, _ = model.predict(obs, action_masks=env.action_masks(), deterministic=True)
        assert int(action) == STOP or SHORT[doc, int(action)]
