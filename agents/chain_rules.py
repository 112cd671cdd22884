"""Decoded chains -> final (label sets, label scores), with the ranking and set rules chosen on validation.

A prior chain (issue 16) can be turned into a ranking and a set in several ways, and which is best
differs by dataset: ranking by emission position lost to the peer on bibtex, while the first step's
distribution won on yeast. So every rule is computed from the same decoded outputs (`ChainOutputs`)
and the winners are chosen per dataset and seed on validation, as the peers' set rule is.

Ranking rules (each -> (n, L) scores; the metrics rank by descending score, ties to the lower id):
  * `emission`: the decoder's position scores (earlier emitted = higher; never emitted by first-step
    probability), as `agents.decoding.predict` gives today;
  * `first_step`: the first step's label distribution (the prior plus the chain's learned correction);
  * `set_then_prior`: the chain's set at STOP offset 0 first, ordered among itself by the prior, then
    every other label by the prior: keeps the peer's ranking, and lets the chain's set move labels up;
  * `marginals` (when given): the share of sampled chains containing each label, ties by first_probs;
  * `prior`: the peer's scores alone, the reference a chain rule must beat.
`set_then_prior` and `marginals` order by two keys, so their scores are ranks (L for the first label
down to 1): exact orders with no float tolerance, but no scale (use them for ranking, not fusion).

Set rules: `chain@s`, the chain's own set decoded greedily with STOP logit offset s (every s given),
and a threshold or top-k `agents.set_rules.SetRule` tuned on validation on `first_step`, on
`marginals` (when given) and on `prior` (the peer's own set, the reference).

Ties between candidates keep the earlier one, in this fixed order: ranking `RANKING_RULES`; sets
`chain@0` first (today's decoding), the other offsets ascending, then `SCORE_SET_SOURCES`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from labelchain.agents.selection import pick_best
from labelchain.agents.set_rules import SetRule, tune_set_rule
from labelchain.envs.metrics import RANKING_NAMES, SET_NAMES, evaluate

RANKING_RULES = ("emission", "first_step", "set_then_prior", "marginals", "prior")
SCORE_SET_SOURCES = ("first_step", "marginals", "prior")  # sources of a tuned threshold / top-k set
CHAIN_PREFIX = "chain@"


@dataclass
class ChainOutputs:
    """One split's decoded chain outputs, all over the same n documents and L labels.

    sets_by_offset: STOP logit offset -> the greedy chain's label sets (bool CSR (n, L)); 0.0 required.
    emission_scores: position scores (agents.label_scores.position_scores); first_probs: the first
    step's label distribution; marginals: share of K sampled chains containing each label (or None);
    prior: the peer's per-label scores, higher = better. Dense (n, L) float arrays, all finite.
    """

    sets_by_offset: dict[float, sp.csr_matrix]
    emission_scores: np.ndarray
    first_probs: np.ndarray
    prior: np.ndarray
    marginals: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.prior = _dense("prior", self.prior, None)
        shape = self.prior.shape
        self.emission_scores = _dense("emission_scores", self.emission_scores, shape)
        self.first_probs = _dense("first_probs", self.first_probs, shape)
        if self.marginals is not None:
            self.marginals = _dense("marginals", self.marginals, shape)
        sets: dict[float, sp.csr_matrix] = {}
        for offset, Y in self.sets_by_offset.items():
            s = float(offset)
            if not np.isfinite(s):
                raise ValueError(f"ChainOutputs.sets_by_offset: offset {offset!r} is not a finite number")
            sets[s] = sp.csr_matrix(Y, dtype=bool)
            if sets[s].shape != shape:
                raise ValueError(
                    f"ChainOutputs.sets_by_offset[{s:g}]: shape {sets[s].shape} differs from prior's {shape}"
                )
        if 0.0 not in sets:
            raise ValueError(f"ChainOutputs.sets_by_offset: offset 0.0 is required, got offsets {sorted(sets)}")
        self.sets_by_offset = sets

    @property
    def n_labels(self) -> int:
        return int(self.prior.shape[1])

    def offsets(self) -> list[float]:
        """Offsets in candidate order: 0.0 first (today's decoding), then the others ascending."""
        return [0.0] + sorted(s for s in self.sets_by_offset if s != 0.0)

    def chain_set(self, offset: float) -> sp.csr_matrix:
        if float(offset) not in self.sets_by_offset:
            raise ValueError(
                f"ChainOutputs has no set at STOP offset {offset:g} (offsets {sorted(self.sets_by_offset)})"
            )
        return self.sets_by_offset[float(offset)]

    def source(self, name: str) -> np.ndarray:
        """The scores a score-based set rule thresholds: first_step, marginals or prior."""
        if name not in SCORE_SET_SOURCES:
            raise ValueError(f"set score source must be one of {SCORE_SET_SOURCES}, got {name!r}")
        scores = {"first_step": self.first_probs, "marginals": self.marginals, "prior": self.prior}[name]
        if scores is None:
            raise ValueError(f"rule {name!r} needs ChainOutputs.marginals, which are None")
        return scores

    def ranking_rules(self) -> list[str]:
        """The ranking rules these outputs support, in candidate order."""
        return [r for r in RANKING_RULES if r != "marginals" or self.marginals is not None]

    def score_sources(self) -> list[str]:
        return [s for s in SCORE_SET_SOURCES if s != "marginals" or self.marginals is not None]


def _dense(name: str, values, shape: tuple[int, ...] | None) -> np.ndarray:
    array = np.asarray(values.toarray() if sp.issparse(values) else values, dtype=np.float64)
    if array.ndim != 2 or (shape is not None and array.shape != shape):
        want = "2-D (n, L)" if shape is None else f"prior's {shape}"
        raise ValueError(f"ChainOutputs.{name}: shape {array.shape}, expected {want}")
    if not np.isfinite(array).all():
        raise ValueError(f"ChainOutputs.{name}: holds {int((~np.isfinite(array)).sum())} non-finite values")
    return array


def lexicographic_scores(primary: np.ndarray, secondary: np.ndarray) -> np.ndarray:
    """Rank scores (L for the best label down to 1) of the order: primary descending, then secondary
    descending, then the lower label id (as envs.metrics breaks ties). Exact: no key is scaled."""
    n, L = primary.shape
    order = np.lexsort((-secondary, -primary), axis=-1)  # stable: equal keys keep ascending ids
    scores = np.empty((n, L), dtype=np.float64)
    np.put_along_axis(scores, order, np.broadcast_to(np.arange(L, 0, -1, dtype=np.float64), (n, L)), axis=1)
    return scores


def ranking_scores(outputs: ChainOutputs, rule: str) -> np.ndarray:
    """(n, L) scores of ranking `rule` (see RANKING_RULES)."""
    if rule == "emission":
        return outputs.emission_scores
    if rule == "first_step":
        return outputs.first_probs
    if rule == "prior":
        return outputs.prior
    if rule == "set_then_prior":
        in_set = outputs.chain_set(0.0).toarray().astype(np.float64)
        return lexicographic_scores(in_set, outputs.prior)
    if rule == "marginals":
        return lexicographic_scores(outputs.source("marginals"), outputs.first_probs)
    raise ValueError(f"ranking rule must be one of {RANKING_RULES}, got {rule!r}")


def chain_rule_name(offset: float) -> str:
    """`chain@<offset>`, the offset written exactly (repr), so the name parses back to it."""
    return f"{CHAIN_PREFIX}{float(offset)!r}"


@dataclass
class ChosenRules:
    """The ranking rule and the set rule chosen on validation, and every candidate's validation value.

    set_rule is `chain@s` (then set_offset = s) or a score source of SCORE_SET_SOURCES (then
    score_rule is the threshold / top-k SetRule tuned on it).
    """

    ranking_rule: str
    ranking_metric: str
    ranking_value: float
    set_rule: str
    set_metric: str
    set_value: float
    n_labels: int
    set_offset: float | None = None
    score_rule: SetRule | None = None
    ranking_validation: dict[str, float] = field(default_factory=dict)
    set_validation: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.ranking_metric not in RANKING_NAMES or self.set_metric not in SET_NAMES:
            raise ValueError(
                f"metrics must be in {RANKING_NAMES} / {SET_NAMES}, got {self.ranking_metric!r} / {self.set_metric!r}"
            )
        if self.ranking_rule not in RANKING_RULES:
            raise ValueError(f"ranking_rule must be one of {RANKING_RULES}, got {self.ranking_rule!r}")
        if self.set_rule.startswith(CHAIN_PREFIX):
            if self.set_offset is None or chain_rule_name(self.set_offset) != self.set_rule:
                raise ValueError(f"set_rule {self.set_rule!r} needs set_offset to match, got {self.set_offset!r}")
        elif self.set_rule not in SCORE_SET_SOURCES or self.score_rule is None:
            raise ValueError(f"set_rule must be chain@<offset> or one of {SCORE_SET_SOURCES} with a score_rule")

    def apply(self, outputs: ChainOutputs) -> tuple[sp.csr_matrix, np.ndarray]:
        """(label sets as bool CSR, ranking scores (n, L)) of another split under the chosen rules."""
        if outputs.n_labels != self.n_labels:
            raise ValueError(f"rules were chosen on {self.n_labels} labels, these outputs have {outputs.n_labels}")
        if self.set_offset is not None:
            Y_pred = outputs.chain_set(self.set_offset)
        else:
            assert self.score_rule is not None
            Y_pred = self.score_rule.apply(outputs.source(self.set_rule))
        return Y_pred, ranking_scores(outputs, self.ranking_rule)

    def to_dict(self) -> dict:
        """JSON-ready, for results rows: the winners, their values and every candidate's value."""
        return {
            "ranking_rule": self.ranking_rule,
            "ranking_metric": self.ranking_metric,
            "ranking_value": self.ranking_value,
            "set_rule": self.set_rule,
            "set_metric": self.set_metric,
            "set_value": self.set_value,
            "n_labels": self.n_labels,
            "set_offset": self.set_offset,
            "score_rule": None if self.score_rule is None else self.score_rule.to_dict(),
            "ranking_validation": dict(self.ranking_validation),
            "set_validation": dict(self.set_validation),
        }

    @classmethod
    def from_dict(cls, row: dict) -> ChosenRules:
        missing = [key for key in _REQUIRED if key not in row]
        if missing:
            raise ValueError(f"chosen chain rules: missing field(s) {missing}")
        score_rule = row.get("score_rule")
        offset = row.get("set_offset")
        try:
            return cls(
                ranking_rule=str(row["ranking_rule"]),
                ranking_metric=str(row["ranking_metric"]),
                ranking_value=float(row["ranking_value"]),
                set_rule=str(row["set_rule"]),
                set_metric=str(row["set_metric"]),
                set_value=float(row["set_value"]),
                n_labels=int(row["n_labels"]),
                set_offset=None if offset is None else float(offset),
                score_rule=None if score_rule is None else SetRule(**score_rule),
                ranking_validation={str(k): float(v) for k, v in row.get("ranking_validation", {}).items()},
                set_validation={str(k): float(v) for k, v in row.get("set_validation", {}).items()},
            )
        except (TypeError, ValueError) as error:
            raise ValueError(f"chosen chain rules: {error}") from None


_REQUIRED = ("ranking_rule", "ranking_metric", "ranking_value", "set_rule", "set_metric", "set_value", "n_labels")


def choose_rules(
    val: ChainOutputs,
    Y_val: sp.csr_matrix,
    *,
    ranking_metric: str = "nDCG@5",
    set_metric: str = "example_f1",
    n_thresholds: int = 40,
    max_k: int = 5,
    peer_eligible: bool = True,
) -> ChosenRules:
    """Best ranking rule by `ranking_metric` and best set rule by `set_metric` on validation (the
    defaults are Ensemble.fit's); ties keep the earlier candidate (see the module).

    `peer_eligible=False`: the `prior` rules (the peer alone) are scored on validation, for the record,
    but cannot win: the chosen rules are the chain's own. On small validation sets (emotions: 39
    documents) the peer's set otherwise wins by noise and the "prior chain" row is the peer's."""
    if ranking_metric not in RANKING_NAMES:
        raise ValueError(f"ranking_metric must be one of {RANKING_NAMES}, got {ranking_metric!r}")
    if set_metric not in SET_NAMES:
        raise ValueError(f"set_metric must be one of {SET_NAMES}, got {set_metric!r}")
    gold = sp.csr_matrix(Y_val, dtype=bool)
    if gold.shape != val.prior.shape:
        raise ValueError(f"Y_val has shape {gold.shape}, the validation outputs {val.prior.shape}")
    ranking_validation = {
        rule: evaluate(gold, scores=ranking_scores(val, rule))[ranking_metric] for rule in val.ranking_rules()
    }
    set_validation = {
        chain_rule_name(offset): evaluate(gold, Y_pred=val.chain_set(offset))[set_metric] for offset in val.offsets()
    }
    tuned: dict[str, SetRule] = {}
    for name in val.score_sources():
        scores = val.source(name)
        tuned[name], _ = tune_set_rule(scores, gold, metric=set_metric, n_thresholds=n_thresholds, max_k=max_k)
        set_validation[name] = evaluate(gold, Y_pred=tuned[name].apply(scores))[set_metric]
    # dicts keep insertion order, the candidate order; pick_best keeps the earlier of equals
    eligible = lambda name: peer_eligible or name != "prior"  # noqa: E731
    best_ranking, _ = pick_best(
        {rule: [value] for rule, value in ranking_validation.items() if eligible(rule)}, ranking_metric
    )
    best_set, _ = pick_best({name: [value] for name, value in set_validation.items() if eligible(name)}, set_metric)
    chain = best_set.startswith(CHAIN_PREFIX)
    return ChosenRules(
        ranking_rule=best_ranking,
        ranking_metric=ranking_metric,
        ranking_value=ranking_validation[best_ranking],
        set_rule=best_set,
        set_metric=set_metric,
        set_value=set_validation[best_set],
        n_labels=val.n_labels,
        set_offset=float(best_set[len(CHAIN_PREFIX) :]) if chain else None,
        score_rule=None if chain else tuned[best_set],
        ranking_validation=ranking_validation,
        set_validation=set_validation,
    )
