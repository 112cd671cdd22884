"""Chain ranking and set rules chosen on validation (agents.chain_rules), on hand-made outputs with
exact scores, exact validation values and the documented tie order."""

import json
import math

import numpy as np
import pytest
import scipy.sparse as sp

from labelchain.agents.chain_rules import (
    ChainOutputs,
    ChosenRules,
    choose_rules,
    lexicographic_scores,
    ranking_scores,
)
from labelchain.agents.set_rules import SetRule
from labelchain.envs.metrics import evaluate
from labelchain.envs.metric_core import top_k_ranked

GOLD = sp.csr_matrix(np.eye(4, dtype=bool))  # doc d has the single gold label d
EMPTY = sp.csr_matrix((4, 4), dtype=bool)
ALL = sp.csr_matrix(np.ones((4, 4), dtype=bool))


def csr(rows) -> sp.csr_matrix:
    return sp.csr_matrix(np.array(rows, dtype=bool))


def outputs(sets=None, emission=None, first=None, prior=None, marginals=None, n=4, L=4) -> ChainOutputs:
    flat = np.full((n, L), 0.25)
    return ChainOutputs(
        sets_by_offset={0.0: sp.csr_matrix((n, L), dtype=bool)} if sets is None else sets,
        emission_scores=flat if emission is None else np.array(emission, dtype=float),
        first_probs=flat if first is None else np.array(first, dtype=float),
        prior=flat if prior is None else np.array(prior, dtype=float),
        marginals=None if marginals is None else np.array(marginals, dtype=float),
    )


# ----------------------------------------------------------------------------- ranking scores
def test_set_then_prior_is_the_set_by_prior_then_the_rest_by_prior_ties_to_lower_ids():
    prior = [[0.1, 0.9, 0.5, 0.5, -1.0], [0.5, 0.2, 0.5, 0.5, 0.9], [0.0] * 5, [-1.0, 2.0, 2.0, -3.0, 0.0]]
    sets = csr([[0, 0, 0, 1, 1], [1, 0, 1, 1, 0], [0] * 5, [1] * 5])
    out = outputs(sets={0.0: sets}, prior=prior, n=4, L=5)
    scores = ranking_scores(out, "set_then_prior")
    # row 0: set {3, 4} by prior (3 then 4), then 1, 2, 0; row 1: set {0, 2, 3} all 0.5 -> by id, then 4, 1;
    # row 2: no set, all ties -> ids; row 3: whole set -> by prior, 1 and 2 tied -> 1 first
    assert scores.tolist() == [[1, 3, 2, 5, 4], [5, 1, 4, 3, 2], [5, 4, 3, 2, 1], [2, 5, 4, 1, 3]]
    assert top_k_ranked(scores, 5).tolist() == [[3, 4, 1, 2, 0], [0, 2, 3, 4, 1], [0, 1, 2, 3, 4], [1, 2, 4, 0, 3]]


def test_set_then_prior_order_is_exact_where_prior_plus_a_big_constant_would_round_ties():
    prior = [[1e12, 1e-12, 0.0, -1e12]]
    out = outputs(sets={0.0: csr([[0, 1, 1, 0]])}, prior=prior, n=1, L=4)
    # a set label's prior of 1e-12 vs 0 survives: label 1 before 2, both before label 0 (1e12)
    assert ranking_scores(out, "set_then_prior").tolist() == [[2, 4, 3, 1]]


def test_marginals_ties_broken_by_first_probs_then_lower_id():
    marginals = [[0.5, 0.25, 0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]]
    first = [[0.1, 0.3, 0.2, 0.3, 0.1], [0.2, 0.2, 0.1, 0.5, 0.0]]
    out = outputs(first=first, marginals=marginals, n=2, L=5)
    assert ranking_scores(out, "marginals").tolist() == [[4, 3, 5, 2, 1], [4, 3, 2, 5, 1]]
    assert lexicographic_scores(np.zeros((1, 3)), np.zeros((1, 3))).tolist() == [[3, 2, 1]]


def test_emission_first_step_and_prior_pass_scores_through():
    e, f, p = np.arange(16.0).reshape(4, 4), np.eye(4) * 0.5, -np.arange(16.0).reshape(4, 4)
    out = outputs(emission=e, first=f, prior=p)
    assert np.array_equal(ranking_scores(out, "emission"), e)
    assert np.array_equal(ranking_scores(out, "first_step"), f)
    assert np.array_equal(ranking_scores(out, "prior"), p)
    with pytest.raises(ValueError, match="needs ChainOutputs.marginals"):
        ranking_scores(out, "marginals")
    with pytest.raises(ValueError, match="ranking rule must be one of"):
        ranking_scores(out, "beam")


# ----------------------------------------------------------------------------- choosing the ranking
def ranking_case(set0=None, emission=None) -> ChainOutputs:
    """Gold = the identity; top-1 labels: emission 0,0,0,0 (P@1 1/4), first_step 0,1,0,0 (2/4),
    prior 0,1,2,0 (3/4), set_then_prior 0,1,2,3 (4/4, doc 3's set {3}), marginals 1,1,1,1 (1/4)."""
    first = [[0.4, 0.3, 0.2, 0.1], [0.1, 0.4, 0.3, 0.2], [0.4, 0.3, 0.2, 0.1], [0.4, 0.3, 0.2, 0.1]]
    prior = [[3, 0, 0, 0], [0, 3, 0, 0], [0, 0, 3, 0], [3, 0, 0, 1]]
    return outputs(
        sets={0.0: csr([[0, 0, 0, 0]] * 3 + [[0, 0, 0, 1]]) if set0 is None else set0},
        emission=[[4, 3, 2, 1]] * 4 if emission is None else emission,
        first=first,
        prior=prior,
        marginals=[[0.0, 1.0, 0.0, 0.0]] * 4,
    )


def test_ranking_rule_with_the_best_validation_metric_wins():
    chosen = choose_rules(ranking_case(), GOLD, ranking_metric="P@1")
    assert chosen.ranking_validation == {
        "emission": 0.25,
        "first_step": 0.5,
        "set_then_prior": 1.0,
        "marginals": 0.25,
        "prior": 0.75,
    }
    assert (chosen.ranking_rule, chosen.ranking_value, chosen.ranking_metric) == ("set_then_prior", 1.0, "P@1")
    default = choose_rules(ranking_case(), GOLD)  # nDCG@5, as Ensemble.fit
    emission_ndcg = (1 + 1 / math.log2(3) + 1 / 2 + 1 / math.log2(5)) / 4  # gold d at rank d + 1
    assert default.ranking_metric == "nDCG@5" and default.ranking_rule == "set_then_prior"
    assert default.ranking_validation["set_then_prior"] == 1.0
    assert default.ranking_validation["emission"] == pytest.approx(emission_ndcg, abs=1e-12)


def test_ranking_ties_keep_the_documented_order():
    # with no chain set, set_then_prior is the prior's order: a tie at 3/4, the earlier rule wins
    tied = choose_rules(ranking_case(set0=EMPTY), GOLD, ranking_metric="P@1")
    assert tied.ranking_validation["set_then_prior"] == tied.ranking_validation["prior"] == 0.75
    assert tied.ranking_rule == "set_then_prior"
    # every rule ranks the same way: emission, the first candidate, wins
    same = outputs(emission=np.eye(4), first=np.eye(4), prior=np.eye(4), marginals=np.eye(4))
    chosen = choose_rules(same, GOLD, ranking_metric="P@1")
    assert set(chosen.ranking_validation.values()) == {1.0} and chosen.ranking_rule == "emission"
    assert list(chosen.ranking_validation) == ["emission", "first_step", "set_then_prior", "marginals", "prior"]
    assert list(choose_rules(outputs(), GOLD).ranking_validation) == [
        "emission",
        "first_step",
        "set_then_prior",
        "prior",
    ]


# ----------------------------------------------------------------------------- choosing the set
def test_set_rule_with_the_best_validation_example_f1_wins():
    # constant scores: the best threshold / top-k is "all labels", example F1 2/(4+1) = 0.4 per doc
    out = outputs(sets={1.0: GOLD, 0.0: EMPTY, -1.0: ALL})
    chosen = choose_rules(out, GOLD)
    assert chosen.set_validation == {
        "chain@0.0": 0.0,
        "chain@-1.0": 0.4,
        "chain@1.0": 1.0,
        "first_step": 0.4,
        "prior": 0.4,
    }
    assert list(chosen.set_validation) == ["chain@0.0", "chain@-1.0", "chain@1.0", "first_step", "prior"]
    assert (chosen.set_rule, chosen.set_offset, chosen.score_rule, chosen.set_value) == ("chain@1.0", 1.0, None, 1.0)
    hamming = choose_rules(out, GOLD, set_metric="hamming_loss")  # lower is better
    assert hamming.set_rule == "chain@1.0" and hamming.set_value == 0.0 and hamming.set_validation["chain@0.0"] == 0.25


def test_set_ties_keep_chain_at_offset_zero_then_the_score_sources_in_order():
    # all at 0.4: chain@0 (today's decoding) first
    assert choose_rules(outputs(sets={0.0: ALL, 0.5: ALL}), GOLD).set_rule == "chain@0.0"
    # marginals and prior both perfect by a threshold: marginals comes first; the rule is the
    # first perfect candidate of tune_set_rule (the smallest threshold above 0)
    eye = np.eye(4)
    chosen = choose_rules(outputs(sets={0.0: ALL}, marginals=eye, prior=eye), GOLD)
    assert chosen.set_validation["marginals"] == chosen.set_validation["prior"] == 1.0
    assert chosen.set_rule == "marginals" and chosen.set_offset is None
    assert chosen.score_rule == SetRule("threshold", float(np.nextafter(0.0, 1.0)), False)


# ----------------------------------------------------------------------------- apply and results rows
def test_apply_reproduces_the_chosen_rules_on_another_split():
    chosen = ChosenRules("set_then_prior", "nDCG@5", 0.9, "chain@-1.0", "example_f1", 0.5, n_labels=3, set_offset=-1.0)
    test_set, test_set0 = csr([[1, 1, 0], [0, 0, 0]]), csr([[0, 0, 1], [0, 1, 0]])
    test = outputs(
        sets={0.0: test_set0, -1.0: test_set},
        prior=[[2.0, 1.0, 0.0], [0.0, 5.0, 5.0]],
        first=[[0.2, 0.7, 0.1], [0.5, 0.4, 0.1]],
        n=2,
        L=3,
    )
    Y_pred, scores = chosen.apply(test)
    assert (Y_pred != test_set).nnz == 0
    assert scores.tolist() == [[2, 1, 3], [1, 3, 2]]  # row 0: set {2} then 0, 1; row 1: set {1} then 2 (tie 5), 0
    by_first = ChosenRules(
        **{**chosen.__dict__, "set_rule": "first_step", "set_offset": None, "score_rule": SetRule("top_k", 1)}
    )
    Y_first, _ = by_first.apply(test)
    assert Y_first.toarray().tolist() == [[False, True, False], [True, False, False]]
    with pytest.raises(ValueError, match="no set at STOP offset 0.5"):
        ChosenRules(**{**chosen.__dict__, "set_rule": "chain@0.5", "set_offset": 0.5}).apply(test)
    with pytest.raises(ValueError, match="chosen on 4 labels, these outputs have 3"):
        ChosenRules(**{**chosen.__dict__, "n_labels": 4}).apply(test)


def test_apply_on_the_validation_split_gives_the_validation_values():
    val = ranking_case()
    val.sets_by_offset[2.0] = GOLD
    chosen = choose_rules(val, GOLD)
    Y_pred, scores = chosen.apply(val)
    assert chosen.set_rule == "chain@2.0"
    assert evaluate(GOLD, scores=scores)["nDCG@5"] == chosen.ranking_value
    assert evaluate(GOLD, Y_pred=Y_pred)["example_f1"] == chosen.set_value == 1.0


def test_to_dict_round_trips_through_json():
    eye = np.eye(4)
    for chosen in (choose_rules(ranking_case(), GOLD), choose_rules(outputs(sets={0.0: ALL}, marginals=eye), GOLD)):
        row = json.loads(json.dumps(chosen.to_dict()))
        assert ChosenRules.from_dict(row) == chosen
        assert row["ranking_rule"] == chosen.ranking_rule and row["set_validation"] == chosen.set_validation
    assert ChosenRules.from_dict(row).score_rule == SetRule("threshold", float(np.nextafter(0.0, 1.0)), False)
    with pytest.raises(ValueError, match=r"missing field\(s\) \['n_labels'\]"):
        ChosenRules.from_dict({k: v for k, v in row.items() if k != "n_labels"})
    with pytest.raises(ValueError, match="set_rule 'chain@1.0' needs set_offset to match"):
        ChosenRules.from_dict({**row, "set_rule": "chain@1.0", "set_offset": 2.0})
    with pytest.raises(ValueError, match="chosen chain rules: .*ranking_rule must be one of"):
        ChosenRules.from_dict({**row, "ranking_rule": "beam"})


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"first_probs": np.zeros((4, 5))}, r"ChainOutputs.first_probs: shape \(4, 5\), expected prior's \(4, 4\)"),
        ({"marginals": np.zeros((3, 4))}, r"ChainOutputs.marginals: shape \(3, 4\)"),
        ({"prior": np.zeros(4)}, r"ChainOutputs.prior: shape \(4,\), expected 2-D"),
        ({"sets_by_offset": {1.0: GOLD}}, r"offset 0.0 is required, got offsets \[1.0\]"),
        ({"sets_by_offset": {0.0: GOLD[:3]}}, r"sets_by_offset\[0\]: shape \(3, 4\) differs"),
        ({"sets_by_offset": {0.0: GOLD, float("nan"): GOLD}}, "offset nan is not a finite number"),
        ({"emission_scores": np.full((4, 4), np.nan)}, "emission_scores: holds 16 non-finite values"),
    ],
)
def test_bad_outputs_give_one_line_errors(change, message):
    fields = {"sets_by_offset": {0.0: GOLD}, "emission_scores": np.eye(4), "first_probs": np.eye(4), "prior": np.eye(4)}
    with pytest.raises(ValueError, match=message) as error:
        ChainOutputs(**{**fields, **change})
    assert "\n" not in str(error.value)


def test_bad_choose_arguments_give_one_line_errors():
    with pytest.raises(ValueError, match=r"Y_val has shape \(3, 4\), the validation outputs \(4, 4\)"):
        choose_rules(outputs(), GOLD[:3])
    with pytest.raises(ValueError, match="ranking_metric must be one of"):
        choose_rules(outputs(), GOLD, ranking_metric="ndcg@5")
    with pytest.raises(ValueError, match="set_metric must be one of"):
        choose_rules(outputs(), GOLD, set_metric="f1")


def test_peer_rules_are_scored_but_cannot_win_when_not_eligible() -> None:
    """Where the prior alone is best on validation, peer_eligible=False picks the best chain rule."""
    prior = np.array([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0]])
    chain_set = sp.csr_matrix(np.array([[0, 0, 1], [1, 0, 0]], dtype=bool))  # wrong everywhere
    outputs = ChainOutputs(
        {0.0: chain_set},
        emission_scores=np.array([[0.0, 1.0, 2.0], [2.0, 0.0, 1.0]]),
        first_probs=np.array([[0.1, 0.3, 0.6], [0.5, 0.2, 0.3]]),
        prior=prior,
    )
    Y = sp.csr_matrix(np.array([[1, 0, 0], [0, 1, 0]], dtype=bool))
    with_peer = choose_rules(outputs, Y)
    assert with_peer.ranking_rule == "prior" and with_peer.set_rule == "prior"
    chain_only = choose_rules(outputs, Y, peer_eligible=False)
    assert chain_only.ranking_rule != "prior" and chain_only.set_rule != "prior"
    assert chain_only.ranking_validation["prior"] == with_peer.ranking_validation["prior"]  # still scored
