"""Ranking scores beyond emission position: label marginals of sampled chains and the auxiliary
multi-label head (exact values on hand-made cases; the head learns on emotions)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from labelchain.agents.decoding import predict
from labelchain.agents.label_scores import marginal_counts_to_scores, position_scores
from labelchain.agents.peers import LabelFrequency
from labelchain.agents.policy import ChainPolicy
from labelchain.agents.supervised import aux_label_loss, teacher_forcing_loss
from labelchain.agents.config import Config
from labelchain.agents.training import train_epochs
from labelchain.envs.data.loading import load_dataset
from labelchain.envs.metrics import evaluate


def test_marginal_scores_exact_and_tiebreak_never_overturns_a_count() -> None:
    counts = np.array([[2, 0, 2, 1], [0, 1, 0, 0]])
    tiebreak = np.array([[0.2, 1.0, 0.6, 1.0], [0.5, 0.0, 1.5, -1.0]])  # clipped to [0, 1]
    got = marginal_counts_to_scores(counts, 4, tiebreak)
    np.testing.assert_allclose(got, [[2.1 / 4, 0.5 / 4, 2.3 / 4, 1.5 / 4], [0.25 / 4, 1 / 4, 0.5 / 4, 0.0]], rtol=1e-6)
    assert np.argsort(-got[0]).tolist() == [2, 0, 3, 1]  # count 1 + full tiebreak stays below count 2
    assert got.dtype == np.float32


def test_position_scores_with_aux_ranks_never_emitted_labels_by_the_head() -> None:
    labels = torch.tensor([[2, 0, -1]])
    aux = torch.tensor([[0.9, 0.1, 0.8, 0.3]])
    got = position_scores(labels, 4, aux)
    np.testing.assert_allclose(got, [[2.0, 0.1 - 1, 3.0, 0.3 - 1]])


def test_aux_label_loss_exact_and_built_from_the_targets() -> None:
    torch.manual_seed(0)
    policy = ChainPolicy(3, 4, hidden_size=8, aux_weight=0.5)
    with torch.no_grad():
        policy.label_head.weight.zero_()
        policy.label_head.bias.copy_(torch.tensor([1.0, -1.0, 0.0, 2.0]))
    X = np.eye(3, dtype=np.float32)[:2]
    targets = torch.tensor([[0, 2, 4, -1], [4, -1, -1, -1]])  # gold {0, 2}; an empty gold set
    sp_ = lambda x: math.log1p(math.exp(x))
    doc0 = sp_(-1) + sp_(-1) + sp_(0) + sp_(2)  # positives 0 (logit 1) and 2 (logit 0)
    doc1 = sp_(1) + sp_(-1) + sp_(0) + sp_(2)
    assert float(aux_label_loss(policy, X, targets).detach()) == pytest.approx((doc0 + doc1) / 2, rel=1e-6)
    policy.eval()
    plain = ChainPolicy(3, 4, hidden_size=8)
    plain.load_state_dict({k: v for k, v in policy.state_dict().items() if not k.startswith("label_head")})
    plain.eval()
    with_aux = float(teacher_forcing_loss(policy, X, targets).detach())
    assert with_aux == pytest.approx(
        float(teacher_forcing_loss(plain, X, targets).detach()) + 0.5 * (doc0 + doc1) / 2, rel=1e-5
    )


def test_score_modes_need_a_head_and_valid_names() -> None:
    policy = ChainPolicy(3, 4, hidden_size=8)
    X = np.eye(3, dtype=np.float32)
    with pytest.raises(ValueError, match="auxiliary head"):
        predict(policy, X, score_mode="aux")
    with pytest.raises(ValueError, match="score_mode"):
        predict(policy, X, score_mode="votes")
    with pytest.raises(ValueError, match="no auxiliary label head"):
        policy.aux_logits(X)
    with pytest.raises(ValueError, match="aux_weight"):
        ChainPolicy(3, 4, aux_weight=-1.0)


def test_marginal_scores_are_seeded_and_shares_of_the_samples() -> None:
    torch.manual_seed(0)
    policy = ChainPolicy(3, 5, hidden_size=8)
    X = np.eye(3, dtype=np.float32)
    _, first = predict(policy, X, score_mode="marginal", n_samples=8, seed=1)
    _, again = predict(policy, X, score_mode="marginal", n_samples=8, seed=1)
    np.testing.assert_array_equal(first, again)
    counts = np.floor(first * 8 + 1e-6)
    assert ((counts >= 0) & (counts <= 8)).all()
    assert (counts.sum(axis=1) >= 5 * 8).all()  # STOP suppressed for 5 steps: >= 5 labels per chain


@pytest.fixture(scope="module")
def trained_with_head():
    torch.manual_seed(0)
    ds = load_dataset("emotions")
    policy = ChainPolicy(ds.n_features, ds.n_labels, hidden_size=32, aux_weight=0.1).fit_input_normalization(ds.train.X)
    train_epochs(policy, ds.train, Config.of(epochs=8, seed=0, val_fraction=0.0), learner="freq2rare", progress=False)
    return ds, policy


@pytest.mark.needs_data
@pytest.mark.slow
def test_aux_head_learns_on_emotions(trained_with_head) -> None:
    ds, policy = trained_with_head
    floor = evaluate(ds.test.Y, scores=LabelFrequency().fit(ds.train).scores(ds.test.X))
    results = {
        mode: evaluate(ds.test.Y, scores=predict(policy, ds.test.X, score_mode=mode)[1])
        for mode in ("aux", "position_aux", "marginal", "position")
    }
    # measured: P@1 / nDCG@3 aux 0.64 / 0.67, position and position_aux 0.67 / 0.77, marginal 0.58 / 0.69;
    # the floor 0.48 / 0.51
    assert results["aux"]["P@1"] >= floor["P@1"] + 0.1
    assert results["aux"]["nDCG@3"] >= floor["nDCG@3"] + 0.1
    for mode, margin in (("position_aux", 0.15), ("position", 0.15), ("marginal", 0.05)):
        assert results[mode]["P@1"] >= floor["P@1"] + margin, mode
        assert results[mode]["nDCG@3"] >= floor["nDCG@3"] + 0.1, mode


@pytest.mark.needs_data
@pytest.mark.slow
def test_score_modes_grid_gives_the_same_rows_in_one_process_and_two(tmp_path) -> None:
    """experiments/score_modes.py: each dataset x weight a cell; --jobs 2 (a process pool) changes nothing."""
    from labelchain.experiments import score_modes

    def rows(jobs: int) -> list[dict]:
        args = score_modes.Args(
            datasets=["emotions"],
            aux_weights=[0.0, 0.1],
            epochs=1,
            hidden_size=16,
            n_samples=2,
            device="cpu",
            jobs=jobs,
            out_dir=str(tmp_path / f"jobs{jobs}"),
        )
        found = score_modes.main(args)["rows"]
        return [{k: v for k, v in row.items() if not k.endswith("seconds")} for row in found]

    one, two = rows(1), rows(2)
    assert one == two
    assert [(r["aux_weight"], r["score_mode"]) for r in one][:2] == [(0.0, "position"), (0.0, "marginal")]
    assert {r["score_mode"] for r in one if r["aux_weight"] == 0.1} >= {"aux", "position_aux"}  # head only at 0.1
