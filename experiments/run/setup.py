"""What a train_rl run starts from: its data (splits, PU hiding, BCL cluster columns or MCG cluster
tokens, overlapping clusters) and a learner's fresh weights (flat or tree output, guidance, the
preset's architecture).

Kept apart from `train_rl.py`, which owns the run's flow (arguments, folders, learners, report).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
import torch

from labelchain.agents.decoding import greedy_decode
from labelchain.agents.guidance import with_gold_clusters
from labelchain.agents.mcg import cluster_part
from labelchain.agents.policy import ChainPolicy
from labelchain.agents.policy_factory import build_policy
from labelchain.agents.prior_columns import prior_columns, with_prior_columns
from labelchain.envs.shortlist import shortlist_from_scores
from labelchain.agents.supervised import carve_validation
from labelchain.envs.chain_task import default_max_steps
from labelchain.envs.data.dataset import Dataset, Split
from labelchain.envs.data.errors import DataFormatError, DataNotFoundError
from labelchain.envs.data.fingerprint import content_hash
from labelchain.envs.data.loading import load_dataset
from labelchain.envs.data.pu import hide_labels
from labelchain.envs.label_clusters import kmeans_clusters, pifa_embeddings
from labelchain.envs.label_overlap import assign_overlapping, cooccurrence_counts, membership_matrix
from labelchain.envs.mcg import MCGSpec
from labelchain.experiments.run.config import ArgsError
from labelchain.experiments.run.learner_run import RunData
from labelchain.experiments.run.identity import data_identity
from labelchain.experiments.run.folder import load_policy

if TYPE_CHECKING:
    from labelchain.experiments.run.train_rl_args import Args

EMPTY_WARN_FRACTION = 0.01  # warn when at least this share of training documents has no label
PRIOR_TOP_M = 100  # labels a document's cached prior stores (the largest --shortlist)


def load_run_data(args: Args) -> RunData:
    try:
        dataset = load_dataset(args.dataset, data_dir=args.data_dir)
    except (DataNotFoundError, DataFormatError):
        raise
    except ValueError as error:  # unknown name
        raise ArgsError(f"--dataset {args.dataset}: {error}") from None
    check_splits(args.dataset, dataset.train, dataset.test)
    full_train = dataset.train
    if args.hide_train_labels > 0:  # PU: the run never sees the hidden labels, test keeps all
        full_train = Split(full_train.X, hide_labels(full_train.Y, args.hide_train_labels, args.seed))
    try:
        train, val = carve_validation(full_train, args.val_fraction, args.seed)
    except ValueError as error:  # too few documents for a validation slice
        raise ArgsError(f"--dataset {args.dataset}: {error}") from None
    identity = data_identity(args.dataset, args.data_dir, {"train": train, "val": val, "test": dataset.test})
    max_steps = default_max_steps(train.max_labels_per_doc, dataset.n_labels)
    label_freq, mcg = train.label_freq, None
    if args.guidance in ("bcl", "mcg"):
        if args.clusters > dataset.n_labels:
            raise ArgsError(f"--clusters {args.clusters}: {args.dataset} has only {dataset.n_labels} labels")
        clusters = kmeans_clusters(pifa_embeddings(train.X, train.Y), args.clusters, seed=args.seed)
        if args.overlap_from is not None:
            clusters = overlapping_clusters(args, train, clusters)
    if args.guidance == "bcl":  # gold clusters ride as extra feature columns of train (agents.guidance)
        train = with_gold_clusters(train, clusters, args.clusters)
    if args.guidance == "mcg":  # train's labels gain their clusters, emitted first (agents.mcg)
        member = clusters if sp.issparse(clusters) else MCGSpec.from_assignment(clusters, args.clusters).membership
        mcg = MCGSpec(member, args.mcg_restrict)
        train = mcg.augment_split(train)
        max_steps = default_max_steps(train.max_labels_per_doc, mcg.n_actions)
    test, shortlist = dataset.test, None
    if args.prior != "none":
        train, val, test, shortlist = with_prior(args, dataset, train, val)
    data = RunData(train, val, test, label_freq, max_steps, mcg, identity, content_hash(dataset))
    data.prior_columns, data.shortlist = (dataset.n_labels if args.prior != "none" else 0), shortlist
    return data


def with_prior(
    args: Args, dataset: Dataset, train: Split, val: Split
) -> tuple[Split, Split, Split, sp.csr_matrix | None]:
    """The three parts with the --prior peer's columns appended (`attach_prior`)."""
    return attach_prior(
        args.prior,
        args.shortlist,
        dataset,
        train,
        val,
        seed=args.seed,
        val_fraction=args.val_fraction,
        name=args.dataset,
    )


def attach_prior(
    peer: str, shortlist: int, dataset: Dataset, train: Split, val: Split, *, seed: int, val_fraction: float, name: str
) -> tuple[Split, Split, Split, sp.csr_matrix | None]:
    """`train`, `val` (carved from `dataset.train` with `seed`, `val_fraction`) and `dataset.test` with
    the `peer`'s prior columns appended (agents.prior_columns), the prior built out of fold on `train`
    and cached; with `shortlist` M > 0, training labels outside each document's top M are dropped (the
    matcher's recall loss: no target can be outside the action space) and the training shortlist is
    returned for the environments. The one way a run or grid cell gets its prior (train_rl, strength);
    bad settings are one-line ArgsErrors naming --prior / --shortlist and `name`."""
    from labelchain.agents.prior import PriorMismatch, prior_identity
    from labelchain.experiments.prior_cache import cached_prior

    problem = shortlist_problem(shortlist, dataset.n_labels, name)
    if problem:
        raise ArgsError(problem)
    try:
        prior = cached_prior(peer, dataset, seed=seed, val_fraction=val_fraction, top_m=prior_top_m(dataset.n_labels))
        prior.check(**prior_identity(dataset, train, val, seed=seed, val_fraction=val_fraction))
    except PriorMismatch as error:
        raise ArgsError(f"--prior {peer}: {error}") from None
    if shortlist > prior.settings["top_m"]:
        raise ArgsError(f"--shortlist {shortlist}: the prior stores only the top {prior.settings['top_m']} labels")
    m = shortlist or None
    parts = []
    for part, split in (("train", train), ("val", val), ("test", dataset.test)):
        parts.append(Split(with_prior_columns(split.X, prior_columns(prior.part(part), m)), split.Y))
    kept = None
    if m is not None:
        kept = shortlist_from_scores(prior.train, m)
        parts[0] = drop_outside_shortlist(parts[0], kept)
    return parts[0], parts[1], parts[2], kept


def drop_outside_shortlist(split: Split, shortlist: sp.csr_matrix) -> Split:
    """`split` with each document's gold labels outside its shortlist dropped: the matcher's recall
    loss, as no target may lie outside the action space (train_rl's runs, the strength grid's folds)."""
    return Split(split.X, sp.csr_matrix(sp.csr_matrix(split.Y).multiply(shortlist), dtype=split.Y.dtype))


def prior_top_m(n_labels: int) -> int:
    """How many labels a document's cached prior stores: its top PRIOR_TOP_M, or all when fewer."""
    return min(PRIOR_TOP_M, n_labels)


def shortlist_problem(shortlist: int, n_labels: int, name: str) -> str | None:
    """Why --shortlist cannot be used on dataset `name` (None when it can): above its label count or
    above what the prior stores (`prior_top_m`). Grids check it for every dataset before training."""
    if shortlist > n_labels:
        return f"--shortlist {shortlist}: {name} has only {n_labels} labels"
    if shortlist > prior_top_m(n_labels):
        return f"--shortlist {shortlist}: the prior stores only the top {prior_top_m(n_labels)} labels"
    return None


def overlapping_clusters(args: Args, train: Split, label_cluster: np.ndarray) -> sp.csr_matrix:
    """Membership (L, C) after label disentanglement: the --overlap-from policy's predicted clusters
    of the training documents (a bcl policy's cluster head, or the cluster tokens an mcg policy
    decodes greedily), C = Yᵀ·M, each label in up to --overlap-lambda clusters."""
    assert args.overlap_from is not None  # the caller checks
    try:
        first = load_policy(args.overlap_from)
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        raise ArgsError(f"--overlap-from {args.overlap_from}: {error}") from None
    n_clusters = first.guidance.n_clusters if first.guidance is not None else first.mcg.n_clusters if first.mcg else 0
    if n_clusters != args.clusters or first.n_features != train.X.shape[1]:
        raise ArgsError(
            f"--overlap-from {args.overlap_from}: not a bcl or mcg policy with --clusters {args.clusters} "
            f"over {train.X.shape[1]} features"
        )
    M = predicted_clusters(first, train.X)
    overlap = assign_overlapping(cooccurrence_counts(train.Y, M), label_cluster, args.overlap_lambda)
    return membership_matrix(overlap, args.clusters)


def predicted_clusters(policy: ChainPolicy, X, batch: int = 1024) -> np.ndarray:
    """(N, C) bool clusters a bcl policy's head predicts, or the cluster tokens an mcg policy emits
    greedily, for the rows of X in batches of `batch` (the policy is put in eval mode)."""
    policy.eval()
    parts = []
    for start in range(0, X.shape[0], batch):
        rows = X[start : start + batch]
        if policy.mcg is None:
            parts.append(policy.predicted_clusters(rows))
        else:
            with torch.no_grad():
                parts.append(cluster_part(greedy_decode(policy, rows).labels, policy.mcg).toarray())
    return np.vstack(parts)


def check_splits(name: str, train: Split, test: Split) -> None:
    """Refuse splits nothing can be learned or measured on; warn when many training documents lack labels."""
    for split_name, split in (("train", train), ("test", test)):
        if len(split) == 0:
            raise ArgsError(f"--dataset {name}: the {split_name} split has no documents")
    empty = float(np.mean(np.diff(train.Y.indptr) == 0))
    if empty == 1.0:
        raise ArgsError(f"--dataset {name}: no training document has a label; there is nothing to learn")
    if empty >= EMPTY_WARN_FRACTION:
        warnings.warn(
            f"--dataset {name}: {empty:.1%} of the training documents have no label; the chains "
            "learn to stop at once on them",
            stacklevel=2,
        )


def fresh_policy(args: Args, train: Split, n_features: int | None = None, mcg: MCGSpec | None = None) -> ChainPolicy:
    """New weights normalised on `train` (agents.policy_factory): with `--output tree`, over the
    balanced label tree of the PIFA embeddings of `train` (seeded by --seed, so every learner of a run
    gets the same tree). With `--guidance bcl`, `train` carries gold cluster columns after its first
    `n_features`; with `--guidance mcg` (`mcg` given), its labels are followed by their clusters."""
    return build_policy(args.to_policy_config(mcg).replace(n_features=n_features or 0), train, seed=args.seed)
