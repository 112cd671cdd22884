"""Which chain ranking / set rule wins on validation, and what the winner gives on test (agents.chain_rules).

    python experiments/chain_rules_check.py --datasets emotions scene yeast --seeds 0 1 2

Per dataset and seed: tunes the OvR peer on the chains' validation slice (agents.peers.tune_peer),
trains a plain chain (freq2rare teacher forcing, early stopping on validation; no prior inside the
chain), decodes validation and test into `ChainOutputs` (agents.rule_outputs: sets at every STOP logit
offset in --offsets, position scores, first-step probabilities, the share of --n-samples sampled
chains holding each label; the peer's log-odds as the prior), chooses the rules on validation and prints a Markdown table: the winners,
and test nDCG@5 / example F1 of the chosen rules, of today's chain (emission + chain@0) and of the
peer alone. Prints only; writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from labelchain.agents.chain_rules import choose_rules
from labelchain.agents.peers import TunedPeer, tune_peer
from labelchain.agents.policy import ChainPolicy
from labelchain.agents.policy_config import PolicyConfig
from labelchain.agents.policy_factory import build_policy
from labelchain.agents.rule_outputs import decode_chain_outputs
from labelchain.agents.supervised import carve_validation
from labelchain.agents.config import Config
from labelchain.agents.training import train_epochs
from labelchain.envs.data.loading import load_dataset
from labelchain.envs.metrics import evaluate
from labelchain.experiments.run.common import parse_args
from labelchain.experiments.run.threads import Threads, set_threads

PROB_CLIP = 1e-6  # OvR probabilities -> log-odds, clipped as agents.prior clips them


@dataclass
class Args(Threads):
    """Chain ranking / set rules chosen on validation, checked on test."""

    datasets: list[str] = field(default_factory=lambda: ["emotions", "scene", "yeast"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    epochs: int = 30
    hidden_size: int = 64
    offsets: list[float] = field(default_factory=lambda: [-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0])
    n_samples: int = 16
    val_fraction: float = 0.1


def chain_outputs(policy: ChainPolicy, peer: TunedPeer, X, offsets: list[float], n_samples: int, seed: int):
    """One split's ChainOutputs from a flat-output chain, with the peer's log-odds as the prior."""
    p = np.clip(peer.scorer.scores(X), PROB_CLIP, 1 - PROB_CLIP)
    return decode_chain_outputs(policy, X, prior=np.log(p / (1 - p)), offsets=offsets, n_samples=n_samples, seed=seed)


def run_one(args: Args, dataset: str, seed: int) -> str:
    """One Markdown row: winners (validation value), test nDCG@5 and example F1 chosen / today / peer."""
    ds = load_dataset(dataset)
    train, val = carve_validation(ds.train, args.val_fraction, seed)
    peer = tune_peer("ovr_logistic", train, val, seed=seed)
    torch.manual_seed(seed)
    policy = build_policy(PolicyConfig(ds.n_features, ds.n_labels, hidden_size=args.hidden_size), train)
    config = Config.of(epochs=args.epochs, seed=seed, patience=5)
    train_epochs(policy, train, config, learner="freq2rare", val=val, progress=False)
    policy.eval()
    val_out = chain_outputs(policy, peer, val.X, args.offsets, args.n_samples, seed)
    test_out = chain_outputs(policy, peer, ds.test.X, args.offsets, args.n_samples, seed)
    chosen = choose_rules(val_out, val.Y)
    Y_chosen, scores_chosen = chosen.apply(test_out)
    Y_peer, scores_peer = peer.predict(ds.test.X)
    tests = [
        evaluate(ds.test.Y, scores=s, Y_pred=Y)
        for Y, s in (
            (Y_chosen, scores_chosen),
            (test_out.chain_set(0.0), test_out.emission_scores),
            (Y_peer, scores_peer),
        )
    ]
    set_rule = chosen.set_rule if chosen.score_rule is None else f"{chosen.set_rule} {chosen.score_rule.kind}"
    cells = [
        dataset,
        str(seed),
        f"{chosen.ranking_rule} ({100 * chosen.ranking_value:.1f})",
        f"{set_rule} ({100 * chosen.set_value:.1f})",
        " / ".join(f"{100 * t['nDCG@5']:.1f}" for t in tests),
        " / ".join(f"{100 * t['example_f1']:.1f}" for t in tests),
    ]
    return "| " + " | ".join(cells) + " |"


def main(args: Args) -> list[str]:
    set_threads(args.threads or 1)
    rows = [
        "| dataset | seed | ranking rule (val nDCG@5) | set rule (val ex. F1) "
        "| test nDCG@5 chosen / today / peer | test ex. F1 chosen / today / peer |",
        "|---|---|---|---|---|---|",
    ]
    print("\n".join(rows), flush=True)
    for dataset in args.datasets:
        for seed in args.seeds:
            rows.append(run_one(args, dataset, seed))
            print(rows[-1], flush=True)
    return rows


if __name__ == "__main__":
    main(parse_args(Args))
