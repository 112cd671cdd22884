"""The training loop's speed-ups keep fp32 results: golden values computed by the code before them
(commit 068d934) for a fixed order, target rearrangement and the combined learner on emotions.

Losses and charts after four updates, chains sampled afterwards, greedy label sets and ranking
scores: a paper-like policy in miniature (dropout on the encoding and the GRU outputs, variational
dropout on the GRU inputs, an auxiliary head, weight decay), so every mask and random draw counts.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from labelchain.agents.decoding import predict
from labelchain.agents.fused import FusedSteps, PackedGRU, gru_cell
from labelchain.agents.learner_base import LearnerConfig
from labelchain.agents.learners import make_learner
from labelchain.agents.output_layers import sample_categorical
from labelchain.agents.policy import ChainPolicy
from labelchain.envs.data.loading import load_dataset

pytestmark = pytest.mark.needs_data

GOLDEN = {
    "freq2rare": {
        "losses/teacher_forcing": [2.26721, 1.99401, 1.75333, 1.75333],
        "charts/episodic_return": [0.29464, 0.38333, 0.36458, 0.34375],
        "charts/label_steps": [42, 43, 46, 48],
        "sampled": [[6, -1, -1, -1], [0, 5, 1, 6], [5, 6, -1, -1], [6, -1, -1, -1], [2, 6, -1, -1], [6, -1, -1, -1]],
        "sets": [[2], [], [], [2], [2], [2], [1], [2]],
        "scores": [[-0.95925, 4, 6, 3, 5, 2], [3, 5, 4, -0.96233, 2, 6], [5, 6, 4, 2, 3, -0.87375]],
    },
    "rearrange": {
        "losses/teacher_forcing": [2.26387, 1.98495, 1.78406, 1.73181],
        "charts/episodic_return": [0.25744, 0.35238, 0.18065, 0.41086],
        "charts/label_steps": [42, 43, 46, 48],
        "sampled": [
            [1, 5, 2, 6, -1, -1],
            [5, 6, -1, -1, -1, -1],
            [2, 6, -1, -1, -1, -1],
            [5, 2, 3, 0, 4, 6],
            [6, -1, -1, -1, -1, -1],
            [4, 6, -1, -1, -1, -1],
        ],
        "sets": [[2], [], [], [2], [4], [2], [1], [2]],
        "scores": [[-0.94867, 3, 6, 4, 5, 2], [3, 5, 4, -0.95734, 2, 6], [5, 6, 3, -0.90541, 2, 4]],
    },
    "combined": {
        "losses/total": [0.25879, 0.30865, 0.27546, 0.32443],
        "losses/policy": [-0.0185, 0.02034, 0.02481, 0.08963],
        "losses/value": [0.14427, 0.17486, 0.09047, 0.09442],
        "losses/entropy": [1.4832, 1.46804, 1.42393, 1.45804],
        "losses/rl": [0.0388, 0.09309, 0.0558, 0.12226],
        "losses/teacher_forcing": [2.23864, 2.24865, 2.25233, 2.14401],
        "charts/episodic_return": [0.25744, 0.38676, 0.24777, 0.36845],
        "charts/label_steps": [64, 69, 68, 72],
        "sampled": [
            [1, 5, 2, 0, 4, 6],
            [5, 3, 0, 6, -1, -1],
            [2, 3, 5, 6, -1, -1],
            [5, 2, 3, 0, 4, 1],
            [0, 1, 6, -1, -1, -1],
            [1, 5, 3, 2, 6, -1],
        ],
        "sets": [[0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 5], [0, 1, 2, 3, 4, 5], [1, 2, 3, 5], [0, 1, 2, 3, 4]]
        + [[0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5]],
        "scores": [[3, 5, 7, 4, 2, 6], [4, 6, 3, 7, -0.95161, 5], [3, 6, 4, 7, 2, 5]],
    },
}


def run_golden(name: str, **config) -> dict:
    """Four updates of learner `name` on 48 emotions documents, then samples, sets and scores."""
    ds = load_dataset("emotions")
    train = ds.train.subset(np.arange(48))
    torch.manual_seed(1)
    policy = ChainPolicy(
        ds.n_features, ds.n_labels, hidden_size=24, label_embed_size=8, dropout=0.3, input_dropout=0.2, aux_weight=0.1
    )
    policy.fit_input_normalization(train.X)
    learner = make_learner(
        name, policy, train, LearnerConfig(lr=1e-2, batch_size=16, seed=2, weight_decay=1e-4, **config)
    )
    rng = np.random.default_rng(3)
    out: dict = {}
    for _ in range(4):
        for key, value in learner.update(np.sort(rng.choice(48, 16, replace=False))).items():
            out.setdefault(key, []).append(value)
    out["sampled"] = learner._sample_chains(np.arange(6), greedy=False).actions.tolist()
    sets, scores = predict(policy, ds.test.X[:8], batch_size=5)
    out["sets"] = [sets[i].indices.tolist() for i in range(sets.shape[0])]
    out["scores"] = scores[:3]
    return out


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "nn_gru"])
@pytest.mark.parametrize("name", list(GOLDEN))
def test_training_keeps_its_fp32_golden_values(name: str, fused: bool):
    """Both passes (agents.fused and the nn.GRU one the benchmark keeps as its baseline)."""
    got, want = run_golden(name, fused=fused), GOLDEN[name]
    assert set(got) == set(want)
    for key, value in want.items():
        if key in ("sampled", "sets"):
            assert got[key] == value, key
        else:
            np.testing.assert_allclose(got[key], value, atol=2e-5, rtol=0, err_msg=key)


def test_sample_categorical_draws_what_the_full_batch_would():
    """Rows 1 and 3 of a 4-row batch sample what torch.multinomial on all 4 rows gave them."""
    probs = torch.softmax(torch.randn(4, 9, generator=torch.Generator().manual_seed(0)), dim=1)
    probs[:, 2] = 0.0
    full = sample_categorical(probs, torch.Generator().manual_seed(7))
    assert torch.equal(full, torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(7)).squeeze(1))
    rows = torch.tensor([1, 3])
    part = sample_categorical(probs[rows], torch.Generator().manual_seed(7), (rows, 4))
    assert torch.equal(part, full[rows])


def test_fused_steps_match_the_incremental_face():
    """Three sampled steps of FusedSteps equal step_joint + choose on the same batch (row 2 ends after one)."""
    torch.manual_seed(0)
    policy = ChainPolicy(5, 7, hidden_size=6, label_embed_size=3).eval()
    X = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    state = policy.initial_state(X)
    steps, emitted = FusedSteps(policy, state), policy.output.new_emitted(4, torch.device("cpu"))
    last, active = torch.full((4,), -1), torch.ones(4, dtype=torch.bool)
    g_fused, g_plain = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    with torch.no_grad():
        for t in range(3):
            choice, value = steps.choose(last, active, emitted, sample=True, temperature=1.0, generator=g_fused)
            joint, want_value, state = policy.step_joint(state, last)
            want = policy.output.choose(joint, emitted, suppress_stop=False, sample=True, generator=g_plain)
            on = active.nonzero().squeeze(1)
            assert torch.equal(choice.action[on], want.action[on])
            torch.testing.assert_close(choice.log_prob[on], want.log_prob[on])
            torch.testing.assert_close(value[on], want_value[on])
            assert (choice.log_prob[~active] == 0).all()
            emitted.add(choice.action, active, policy.stop_id)
            last = choice.action
            if t == 0:
                active = active & (torch.arange(4) != 2)


def test_packed_gru_gradients_match_autograd_through_the_cell():
    """PackedGRU's hand-written backward against torch.autograd.gradcheck (float64, lengths 3, 2, 2, 1)."""
    g = torch.Generator().manual_seed(0)
    batch_sizes, H = [4, 3, 1], 3
    gates = torch.randn(8, 3 * H, dtype=torch.float64, generator=g, requires_grad=True)
    h0 = torch.randn(4, H, dtype=torch.float64, generator=g, requires_grad=True)
    w_hh = torch.randn(3 * H, H, dtype=torch.float64, generator=g, requires_grad=True)
    b_hh = torch.randn(3 * H, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *t: PackedGRU.apply(*t, batch_sizes), (gates, h0, w_hh, b_hh))
    hidden, outputs, offset = h0, [], 0
    for n in batch_sizes:
        hidden = gru_cell(gates[offset : offset + n], torch.addmm(b_hh, hidden[:n], w_hh.t()), hidden[:n])
        outputs.append(hidden)
        offset += n
    torch.testing.assert_close(PackedGRU.apply(gates, h0, w_hh, b_hh, batch_sizes), torch.cat(outputs))
