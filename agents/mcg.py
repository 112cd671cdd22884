"""MCG (XLGen's multitask cluster generation) for the chain policy: cluster tokens, then labels.

The action space, the gold sequences and the constraint are defined once in `envs.mcg` (numpy, what
the environments apply); `MCGConstraint` is that constraint in torch, installed in the flat output
layer, so greedy / sampled / beam decoding, the RL collector and teacher forcing
(`FlatOutput.sequence_log_probs`) all see the masks the environment applies. Tests hold the two
versions equal.

How a library caller trains an MCG-guided chain (what `experiments/train_rl.py --guidance mcg` does):

    from labelchain.agents.mcg import mcg_setup
    from labelchain.agents.policy_config import PolicyConfig
    from labelchain.agents.policy_factory import build_policy
    from labelchain.agents.config import Config
    from labelchain.agents.training import train_epochs

    kwargs, train_mcg = mcg_setup(train, n_clusters=30, seed=0, restrict=False)
    policy = build_policy(PolicyConfig(**kwargs, hidden_size=128), train_mcg)
    train_epochs(policy, train_mcg, Config.of(epochs=10), learner="rearrange", val=val)

`train` and `val` are ordinary splits (n, L); only the training split is augmented. The policy's
`n_labels` is L + C (its action vocabulary), `label_columns` is L; `agents.decoding.predict`, and so
validation inside `train_epochs`, `evaluate()` and the ensemble, see (n, L) label columns only. The
fixed orderings and target rearrangement order the cluster part and the label part separately,
clusters first (`agents.rearrangement`, `lead_from`); `ChainPolicy.save` keeps the membership in the
config, so a saved policy reloads with its constraint. MCG needs the flat output layer.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from labelchain.envs.data.dataset import Split
from labelchain.envs.label_clusters import kmeans_clusters, pifa_embeddings
from labelchain.envs.mcg import MCGSpec


class MCGConstraint(nn.Module):
    """`envs.mcg.MCGSpec.allowed_actions` in torch (the membership rides as a non-saved buffer)."""

    member_t: torch.Tensor  # (C, L) float membership, transposed

    def __init__(self, spec: MCGSpec) -> None:
        super().__init__()
        self.n_labels, self.n_clusters, self.restrict = spec.n_labels, spec.n_clusters, spec.restrict
        member_t = torch.from_numpy(spec.membership.T.toarray().astype(np.float32))  # (C, L)
        self.register_buffer("member_t", member_t, persistent=False)

    def forward(self, emitted: torch.Tensor, suppress_stop: torch.Tensor | bool = False) -> torch.Tensor:
        """(N, A + 1) allowed actions after the emitted mask `emitted` (N, A + 1); `suppress_stop` is a
        bool or an (N,) bool tensor (per row, e.g. per teacher-forcing position)."""
        L, A = self.n_labels, self.n_labels + self.n_clusters
        if emitted.shape[-1] != A + 1:
            raise ValueError(f"mcg: emitted mask must have {A + 1} columns, got {emitted.shape[-1]}")
        allowed = ~emitted
        allowed[:, A] = True
        allowed[:, L:A] &= ~emitted[:, :L].any(dim=1, keepdim=True)
        if self.restrict:
            allowed[:, :L] &= (emitted[:, L:A].to(self.member_t.dtype) @ self.member_t) > 0
        suppress = torch.as_tensor(suppress_stop, dtype=torch.bool, device=emitted.device)
        allowed[:, A] &= ~(suppress & allowed[:, :A].any(dim=1))
        return allowed


def mcg_setup(
    train: Split,
    n_clusters: int,
    seed: int = 0,
    membership: sp.spmatrix | None = None,
    restrict: bool = False,
) -> tuple[dict, Split]:
    """(ChainPolicy keyword arguments, augmented training split) of an MCG chain over `train`.

    Clusters: k-means on the PIFA label embeddings of `train` (seeded), or `membership` (L, C),
    e.g. overlapping clusters (`envs.label_overlap.membership_matrix`, a label in up to λ clusters).
    """
    L = train.Y.shape[1]
    if membership is None:
        if not 1 <= n_clusters <= L:
            raise ValueError(f"mcg: n_clusters must lie in 1..{L} (the labels), got {n_clusters}")
        spec = MCGSpec.from_assignment(
            kmeans_clusters(pifa_embeddings(train.X, train.Y), n_clusters, seed=seed), n_clusters, restrict
        )
    else:
        spec = MCGSpec(sp.csr_matrix(membership), restrict)
        if spec.n_labels != L or spec.n_clusters != n_clusters:
            raise ValueError(f"mcg: membership is {spec.membership.shape}, expected ({L}, {n_clusters})")
    kwargs = {"n_features": int(train.X.shape[1]), "n_labels": spec.n_actions, "mcg": spec}
    return kwargs, spec.augment_split(train)


def cluster_part(labels: torch.Tensor | np.ndarray, spec: MCGSpec) -> sp.csr_matrix:
    """(B, C) bool clusters emitted in padded action sequences `labels` (B, T) (ids L..L+C-1)."""
    ids = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels, dtype=np.int64)
    rows, cols = np.nonzero((ids >= spec.n_labels) & (ids < spec.n_actions))
    data = np.ones(len(rows), dtype=bool)
    return sp.csr_matrix((data, (rows, ids[rows, cols] - spec.n_labels)), shape=(ids.shape[0], spec.n_clusters))
