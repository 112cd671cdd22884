"""Documents per second of the supervised learners and of test-time decoding, one thread, and where
the time of one teacher-forcing update goes.

    python experiments/bench/bench_supervised.py --dataset bibtex --hidden-sizes 512 1024 --max-docs 1280

Rows per hidden size: one epoch of teacher forcing (freq2rare order); one epoch of target
rearrangement from a fresh policy (cold: untrained chains run to the step cap) and after that
teacher-forcing epoch (warm); greedy and beam decoding of the test split (`predict`, which also
produces the ranking scores). `--max-docs` times the first that many training / test documents
only. `--breakdown` adds the share of each phase of a teacher-forcing update (encoder, GRU, output
layer + loss, backward, optimiser step, the greedy decode the fixed-order learners run for their
charts), the share of real (non-padding) target positions, and the old and new update paths side by
side on the same batches (a load-robust before/after ratio). Prints tables, then one JSON line.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from labelchain.agents.config import DEFAULTS as D
from labelchain.agents.decoding import greedy_decode, predict
from labelchain.agents.policy import ChainPolicy
from labelchain.agents.policy_config import PolicyConfig
from labelchain.agents.policy_factory import build_policy
from labelchain.agents.rearrangement import ordered_targets
from labelchain.agents.supervised import teacher_forcing_loss
from labelchain.agents.config import Config
from labelchain.agents.training import train_epochs
from labelchain.envs.data.dataset import Dataset, Split
from labelchain.envs.data.loading import load_dataset
from labelchain.envs.orderings import LabelOrdering
from labelchain.experiments.run.common import parse_args, resolve_device
from labelchain.experiments.run.threads import Threads, set_threads


@dataclass
class Args(Threads):
    """Benchmark supervised training and decoding of the chain policy (documents per second)."""

    dataset: str = "bibtex"
    batch_size: int = D.learner.batch_size
    hidden_sizes: list[int] = field(default_factory=lambda: [256])
    label_embed_size: int = D.policy.label_embed_size
    decode_batch_size: int = 512
    beam_width: int = 5
    max_docs: int | None = field(default=None, metadata={"help": "time only this many train/test documents"})
    breakdown: bool = False
    breakdown_batches: int = 10
    device: str = "auto"
    seed: int = 0


def _fresh_policy(dataset: Dataset, hidden: int, args: Args, device: torch.device) -> ChainPolicy:
    torch.manual_seed(args.seed)
    config = PolicyConfig(
        dataset.n_features, dataset.n_labels, hidden_size=hidden, label_embed_size=args.label_embed_size
    )
    return build_policy(config, dataset.train).to(device)


def _train_rate(policy: ChainPolicy, train: Split, args: Args, ordering: str, label_freq: np.ndarray) -> float:
    config = Config.of(epochs=1, batch_size=args.batch_size, seed=args.seed, val_fraction=0.0)
    started = time.perf_counter()
    train_epochs(policy, train, config, learner=ordering, label_freq=label_freq, progress=False)
    return len(train) / (time.perf_counter() - started)


def _decode_rate(policy: ChainPolicy, test: Split, max_steps: int, args: Args, method: str) -> float:
    started = time.perf_counter()
    predict(
        policy,
        test.X,
        batch_size=args.decode_batch_size,
        max_steps=max_steps,
        method=method,
        beam_width=args.beam_width,
    )
    return len(test) / (time.perf_counter() - started)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def breakdown(policy: ChainPolicy, dataset: Dataset, args: Args, device: torch.device) -> dict[str, float]:
    """Seconds per phase of `breakdown_batches` freq2rare teacher-forcing updates, plus padding share."""
    ordering = LabelOrdering("freq2rare", dataset.label_freq, seed=args.seed)
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-3, fused=True)
    rng = np.random.default_rng(args.seed)
    features: Any = dataset.train.X  # dense or CSR
    phases = dict.fromkeys(("encoder", "GRU", "output layer + loss", "backward", "optimiser step", "chart decode"), 0.0)
    real = padded = 0
    for _ in range(args.breakdown_batches):
        rows = np.sort(rng.choice(len(dataset.train), args.batch_size, replace=False))
        X = features[rows]
        targets = torch.as_tensor(ordered_targets(dataset.train.Y[rows], ordering), device=device)
        real, padded = real + int((targets >= 0).sum()), padded + targets.numel()
        policy.train()
        ticks = [time.perf_counter()]
        policy.initial_state(X)  # the encoder alone (sequence_hidden encodes again; subtracted below)
        _sync(device)
        ticks.append(time.perf_counter())
        policy.sequence_hidden(X, policy.previous_labels(targets), (targets >= 0).sum(dim=1))
        _sync(device)
        ticks.append(time.perf_counter())
        loss = teacher_forcing_loss(policy, X, targets)  # the full forward pass, GRU included
        _sync(device)
        ticks.append(time.perf_counter())
        optimizer.zero_grad()
        loss.backward()
        _sync(device)
        ticks.append(time.perf_counter())
        optimizer.step()
        _sync(device)
        ticks.append(time.perf_counter())
        policy.eval()
        with torch.no_grad():
            greedy_decode(policy, X, max_steps=dataset.train.max_labels_per_doc + 2)
        _sync(device)
        ticks.append(time.perf_counter())
        encoder, gru_and_encoder, forward = (ticks[1] - ticks[0], ticks[2] - ticks[1], ticks[3] - ticks[2])
        phases["encoder"] += encoder
        phases["GRU"] += gru_and_encoder - encoder
        phases["output layer + loss"] += max(0.0, forward - gru_and_encoder)
        phases["backward"] += ticks[4] - ticks[3]
        phases["optimiser step"] += ticks[5] - ticks[4]
        phases["chart decode"] += ticks[6] - ticks[5]
    return {**phases, "real_position_share": real / max(1, padded)}


def padded_loss(policy: ChainPolicy, X, targets: torch.Tensor) -> torch.Tensor:
    """The teacher-forcing loss as it was before the cost work: GRU over every padded position,
    the output layer and the emitted-label mask on the full (B, T, L+1) grid (tests/test_training_cost.py
    checks the packed loss against it)."""
    outputs, doc = policy.sequence_hidden(X, policy.previous_labels(targets))
    joint, _ = policy.joint_inputs(outputs, doc)
    logits = policy.output.logits(joint)
    present = targets >= 0
    one_hot = torch.zeros_like(logits, dtype=torch.bool)
    one_hot.scatter_(2, targets.clamp(min=0)[:, :, None], present[:, :, None])
    before = ((one_hot.cumsum(dim=1) - one_hot.long()) > 0) & present[:, :, None]
    log_p = torch.log_softmax(logits.masked_fill(before, float("-inf")), dim=-1)
    chosen = log_p.gather(2, targets.clamp(min=0)[:, :, None]).squeeze(2)
    return -torch.where(present, chosen, torch.zeros_like(chosen)).sum() / present.sum()


def update_paths(dataset: Dataset, hidden: int, args: Args, device: torch.device) -> dict[str, float]:
    """Seconds per freq2rare update, old path (padded loss, plain Adam, greedy chart decode) vs new
    (packed GRU, output layer at real positions, fused AdamW, no chart decode), alternating on the
    same batches in one process so that machine load hits both alike."""
    ordering = LabelOrdering("freq2rare", dataset.label_freq, seed=args.seed)
    paths = {}
    for name in ("before", "after"):
        policy = _fresh_policy(dataset, hidden, args, device)
        fused = name == "after"
        optimizer = (
            torch.optim.AdamW(policy.parameters(), lr=1e-3, weight_decay=0.0, fused=fused)
            if fused
            else torch.optim.Adam(policy.parameters(), lr=1e-3)
        )
        paths[name] = (policy, optimizer)
    seconds = {"before": 0.0, "after": 0.0}
    rng = np.random.default_rng(args.seed)
    features: Any = dataset.train.X  # dense or CSR
    for _ in range(args.breakdown_batches):
        rows = np.sort(rng.choice(len(dataset.train), args.batch_size, replace=False))
        X = features[rows]
        targets = torch.as_tensor(ordered_targets(dataset.train.Y[rows], ordering), device=device)
        for name, (policy, optimizer) in paths.items():
            started = time.perf_counter()
            policy.train()
            loss = padded_loss(policy, X, targets) if name == "before" else teacher_forcing_loss(policy, X, targets)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
            optimizer.step()
            if name == "before":
                policy.eval()
                with torch.no_grad():
                    greedy_decode(policy, X, max_steps=dataset.train.max_labels_per_doc + 2)
            _sync(device)
            seconds[name] += time.perf_counter() - started
    n = args.breakdown_batches * args.batch_size
    return {
        "before_docs_per_sec": n / seconds["before"],
        "after_docs_per_sec": n / seconds["after"],
        "speedup": seconds["before"] / seconds["after"],
    }


def main(args: Args) -> dict:
    set_threads(args.threads or 1)
    device = resolve_device(args.device)
    dataset = load_dataset(args.dataset)
    train, test = dataset.train, dataset.test
    if args.max_docs is not None:
        train, test = (
            train.subset(np.arange(min(args.max_docs, len(train)))),
            test.subset(np.arange(min(args.max_docs, len(test)))),
        )
    print(
        f"{args.dataset}: {len(train)} train / {len(test)} test docs timed, {dataset.n_labels} labels, "
        f"{dataset.n_features} features, batch {args.batch_size}, device {device}"
    )
    freq, max_steps = dataset.label_freq, dataset.max_labels_per_doc + 1
    result: dict = {
        "dataset": args.dataset,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "docs_per_sec": {},
        "breakdown": {},
    }
    for hidden in args.hidden_sizes:
        rows = [
            (
                "rearrangement (cold)",
                _train_rate(_fresh_policy(dataset, hidden, args, device), train, args, "rearrange", freq),
            )
        ]
        policy = _fresh_policy(dataset, hidden, args, device)
        rows.append(("teacher forcing", _train_rate(policy, train, args, "freq2rare", freq)))
        trained = {k: v.clone() for k, v in policy.state_dict().items()}
        rows.append(("rearrangement (warm)", _train_rate(policy, train, args, "rearrange", freq)))
        policy.load_state_dict(trained)
        rows.append(("greedy decode (test)", _decode_rate(policy, test, max_steps, args, "greedy")))
        rows.append((f"beam-{args.beam_width} decode (test)", _decode_rate(policy, test, max_steps, args, "beam")))
        print(f"hidden {hidden}\n{'phase':<24} {'docs/s':>10}")
        for name, rate in rows:
            print(f"{name:<24} {rate:>10,.1f}")
        result["docs_per_sec"][str(hidden)] = {name: round(rate, 1) for name, rate in rows}
        if args.breakdown:
            parts = breakdown(policy, dataset, args, device)
            total = sum(v for k, v in parts.items() if k != "real_position_share")
            print(
                f"one teacher-forcing update, hidden {hidden} (real target positions: "
                f"{100 * parts['real_position_share']:.0f}% of the padded batch)"
            )
            for name, seconds in parts.items():
                if name != "real_position_share":
                    print(
                        f"  {name:<22} {100 * seconds / total:5.1f}%  {1000 * seconds / args.breakdown_batches:8.1f} ms"
                    )
            result["breakdown"][str(hidden)] = {k: round(v, 4) for k, v in parts.items()}
            ab = update_paths(dataset, hidden, args, device)
            print(
                f"teacher-forcing update, old vs new path side by side: {ab['before_docs_per_sec']:.1f} vs "
                f"{ab['after_docs_per_sec']:.1f} docs/s ({ab['speedup']:.2f}x)"
            )
            result.setdefault("update_paths", {})[str(hidden)] = {k: round(v, 2) for k, v in ab.items()}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(parse_args(Args))
