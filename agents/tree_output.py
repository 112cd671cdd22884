"""The tree-factored output layer (see agents.output_layers for the interface both layers offer).

Why: a flat softmax costs O(L) per chain step; at 100,000 labels that dominates everything. The tree
layer factorises each action through a balanced label tree (envs.label_clusters.LabelTree): at the
root choose a level-1 node or STOP (STOP is one more child of the root), then a child per level, then
a label inside the leaf, so

    log p(label) = sum over levels of log-softmax among siblings + log-softmax inside the leaf,
    log p(STOP)  = its log-softmax at the root.

That is an exact distribution over the L + 1 actions, so teacher forcing, rearrangement and policy
gradient train it unchanged. Masking keeps chains repeat-free: an emitted label is masked inside its
leaf and a node whose labels are all emitted is masked among its siblings (renormalising locally, not
globally as the flat layer does). Emitted labels are tracked as a (B, T) history on the tree path
(never a dense (B, L) mask).

Tree entropies are the sum of the per-level conditional entropies along the chosen path: by the
chain rule their expectation under the policy is the exact entropy, at O(B·depth + leaf) cost.
Greedy tree decoding is beam search over clusters (PECOS): keep the `beam` most probable nodes per
level, score the labels of the kept leaves exactly, take the best label (or STOP if it is more
probable); sampling is exact ancestral sampling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from labelchain.agents.chain_step import Choice, HistoryEmitted
from labelchain.agents.tree_ops import (
    NEG_INF,
    gathered_scores,
    group_log_softmax,
    history_counts,
    masked_entropy,
    masked_log_softmax,
    padded_groups,
)
from labelchain.envs.label_clusters import LabelTree


@dataclass
class Beam:
    """A beam search over clusters for a batch: exact log-probs (N, K·M) of the labels in the kept
    leaves (-inf for padding) and their ids (-1); the root's log-probs (N, C + 1, STOP last) and which
    of them are allowed; with `track`, per level 1..depth the kept nodes (N, K) and the entropy of the
    distribution below each (its children, or its labels at the leaves)."""

    log_probs: torch.Tensor
    labels: torch.Tensor
    root_log_probs: torch.Tensor
    root_allowed: torch.Tensor
    kept: list[tuple[torch.Tensor, torch.Tensor]]

    @property
    def stop_log_prob(self) -> torch.Tensor:
        return self.root_log_probs[:, -1]


class TreeOutput(nn.Module):
    """Tree-factored output: node scores per level, label scores inside leaves; see module docstring."""

    kind = "tree"

    def __init__(
        self, in_size: int, tree: LabelTree, beam: int = 10, sparse: bool = False, query_size: int | None = None
    ) -> None:
        super().__init__()
        if beam < 1 or (query_size is not None and query_size < 1):
            raise ValueError(f"tree beam and query size must be >= 1, got {beam}, {query_size}")
        tree.check()
        self.tree, self.beam, self.sparse = tree, int(beam), bool(sparse)
        # Optional low-rank query: nodes and labels are scored against Linear(joint) of this size, so
        # each candidate gathers query_size floats, not hidden + doc (decoding is bandwidth-bound).
        self.query_size = None if query_size is None else int(query_size)
        if self.query_size is not None:
            self.query = nn.Linear(in_size, self.query_size)
            in_size = self.query_size
        self.n_labels = self.stop_id = tree.n_labels
        self.depth = tree.depth
        bound = 1.0 / np.sqrt(in_size)
        sizes = tree.level_sizes()
        self.node_weight = nn.ParameterList(
            nn.Parameter(torch.empty(n, in_size).uniform_(-bound, bound)) for n in sizes[1:]
        )
        self.node_bias = nn.ParameterList(nn.Parameter(torch.zeros(n, 1)) for n in sizes[1:])
        self.stop_weight = nn.Parameter(torch.empty(in_size).uniform_(-bound, bound))
        self.stop_bias = nn.Parameter(torch.zeros(()))
        self.label_weight = nn.Parameter(torch.empty(tree.n_labels, in_size).uniform_(-bound, bound))
        self.label_bias = nn.Parameter(torch.zeros(tree.n_labels, 1))  # (R, 1): a table F.embedding can read
        ancestors = tree.ancestors()
        self._buffer("ancestors", np.vstack([ancestors, np.full((1, self.depth), -1)]))  # row L: STOP/pad
        for d, parent in enumerate(tree.parents):
            children, rank = padded_groups(parent, sizes[d])
            self._buffer(f"children{d}", children)
            self._buffer(f"rank{d + 1}", rank)
            self._buffer(f"size{d + 1}", np.bincount(ancestors[:, d], minlength=sizes[d + 1]))
        leaf = tree.leaf_of_label()
        members, label_rank = padded_groups(leaf[tree.leaf_labels], tree.n_leaves)
        self._buffer("leaf_members", np.where(members >= 0, tree.leaf_labels[members.clip(min=0)], -1))
        position = np.empty(tree.n_labels, dtype=np.int64)
        position[tree.leaf_labels] = label_rank
        self._buffer("label_position", position)

    def _buffer(self, name: str, array: np.ndarray) -> None:
        self.register_buffer(name, torch.as_tensor(np.asarray(array, dtype=np.int64)), persistent=False)

    def _table(self, name: str) -> torch.Tensor:
        """An index buffer derived from the tree (rebuilt from the config, never saved with the weights)."""
        return getattr(self, name)

    def _q(self, joint: torch.Tensor) -> torch.Tensor:
        """What nodes and labels are scored against: the joint state, or its low-rank query."""
        return joint if self.query_size is None else self.query(joint)

    def sparse_parameters(self) -> list[nn.Parameter]:
        """The label tables, when they get sparse gradients (see agents.optim)."""
        return [self.label_weight, self.label_bias] if self.sparse else []

    def new_emitted(self, batch: int, device: torch.device) -> HistoryEmitted:
        return HistoryEmitted(torch.zeros(batch, 0, dtype=torch.long, device=device))

    # ------------------------------------------------------------------ conditional distributions
    def _history_ancestors(self, history: torch.Tensor, level: int) -> torch.Tensor:
        """(N, T) node at `level` (1..depth) of each history label, -1 for padding."""
        ids = torch.where(history >= 0, history, self.n_labels)
        return self._table("ancestors")[ids, level - 1]

    def _children(self, joint, node, level, history, stop_blocked, temperature):
        """Log-softmax over the children (at level+1) of each of the nodes `node` (N, K) at `level`.

        Returns (log_p, child ids with -1 for padding / STOP, allowed), all (N, K, C); at the root
        (level 0, K = 1) a last column is STOP."""
        kids = self._table(f"children{level}")[node.clamp(min=0)]
        safe = kids.clamp(min=0)
        N, K, C = kids.shape
        scores = gathered_scores(joint, self.node_weight[level], self.node_bias[level], safe.reshape(N, K * C))
        scores = scores.reshape(N, K, C)
        parent = self._history_ancestors(history, level) if level else torch.where(history >= 0, 0, -1)
        rank = self._table(f"rank{level + 1}")[self._history_ancestors(history, level + 1).clamp(min=0)]
        used = history_counts(node.clamp(min=0), parent, rank, C)
        allowed = (kids >= 0) & (used < self._table(f"size{level + 1}")[safe])
        if level == 0:
            stop_score = (joint @ self.stop_weight + self.stop_bias)[:, None, None].expand(N, K, 1)
            scores = torch.cat([scores, stop_score], dim=-1)
            kids = torch.cat([kids, torch.full_like(kids[..., :1], -1)], dim=-1)
            stop_ok = ~(stop_blocked[:, None] & allowed.any(dim=-1))
            allowed = torch.cat([allowed, stop_ok[..., None]], dim=-1)
        return masked_log_softmax(scores / temperature, allowed), kids, allowed

    def _leaf(self, joint, leaf, history, temperature):
        """Log-softmax over the labels of each leaf `leaf` (N, K): (log_p, label ids, allowed) (N, K, M)."""
        labels = self._table("leaf_members")[leaf.clamp(min=0)]
        N, K, M = labels.shape
        safe = labels.clamp(min=0)
        flat_ids = safe.reshape(N, K * M)
        scores = gathered_scores(joint, self.label_weight, self.label_bias, flat_ids, self.sparse).reshape(N, K, M)
        position = self._table("label_position")[history.clamp(min=0)]
        emitted = history_counts(leaf.clamp(min=0), self._history_ancestors(history, self.depth), position, M)
        allowed = (labels >= 0) & (emitted == 0)
        return masked_log_softmax(scores / temperature, allowed), labels, allowed

    def _stop_blocked(self, history: torch.Tensor, suppress) -> torch.Tensor:
        blocked = torch.as_tensor(suppress, device=history.device).expand(history.shape[0])
        return blocked & ((history >= 0).sum(dim=1) < self.n_labels)

    # ------------------------------------------------------------------ scoring known actions
    def _action_log_probs(self, joint, actions, history, stop_blocked, temperature):
        """Exact log p(action) (N,) and path entropy (N,) under the masked tree distribution."""
        is_stop = actions == self.stop_id
        label = torch.where(is_stop, 0, actions)
        path = self._table("ancestors")[label]  # (N, depth)
        node = torch.zeros_like(actions)
        total = torch.zeros(actions.shape, device=joint.device)
        entropy = torch.zeros_like(total)
        for level in range(self.depth):
            log_p, kids, allowed = (
                t[:, 0] for t in self._children(joint, node[:, None], level, history, stop_blocked, temperature)
            )
            column = self._table(f"rank{level + 1}")[path[:, level]]
            if level == 0:
                column = torch.where(is_stop, kids.shape[1] - 1, column)
            live = ~is_stop | (level == 0)
            total = total + torch.where(live, log_p.gather(1, column[:, None]).squeeze(1), 0.0)
            entropy = entropy + torch.where(live, masked_entropy(log_p, allowed), 0.0)
            node = path[:, level]
        log_p, _, allowed = (t[:, 0] for t in self._leaf(joint, node[:, None], history, temperature))
        in_leaf = log_p.gather(1, self._table("label_position")[label][:, None]).squeeze(1)
        total = total + torch.where(is_stop, 0.0, in_leaf)
        return total, entropy + torch.where(is_stop, 0.0, masked_entropy(log_p, allowed))

    def sequence_log_probs(
        self,
        joint,
        actions,
        *,
        suppress_stop_steps: int = 0,
        temperature: float = 1.0,
        mask_emitted: bool = True,
        with_entropy: bool = True,
        prior: object = None,
    ):
        """Per-position log-prob and path entropy (B, T) of `actions` (-1 padded; 0 on padding).
        `prior` must be None: prior policies are flat (agents.policy_config)."""
        if prior is not None:
            raise ValueError("the tree output takes no prior (a prior policy needs output='flat')")
        if not mask_emitted:
            raise ValueError("the tree output always masks emitted labels (mask_emitted=False is flat-only)")
        B, T = actions.shape
        labels = torch.where(actions == self.stop_id, -1, actions)
        before = torch.arange(T, device=actions.device)[None, :] < torch.arange(T, device=actions.device)[:, None]
        history = torch.where(before[None], labels[:, None, :], -1)  # (B, T, T): labels before position t
        rows = (actions >= 0).nonzero(as_tuple=True)
        flat_history = history[rows]
        blocked = self._stop_blocked(flat_history, rows[1] < suppress_stop_steps)
        log_p, entropy = self._action_log_probs(self._q(joint[rows]), actions[rows], flat_history, blocked, temperature)
        out_lp = torch.zeros(B, T, device=joint.device, dtype=log_p.dtype).index_put(rows, log_p)
        out_h = torch.zeros_like(out_lp)
        if with_entropy:
            out_h = out_h.index_put(rows, entropy)
        return out_lp, out_h

    # ------------------------------------------------------------------ decoding
    def _beam(self, joint, history, stop_blocked, width: int, track: bool = False) -> Beam:
        """Beam search over clusters, keeping the `width` most probable nodes per level (see `Beam`)."""
        N = joint.shape[0]
        root = torch.zeros(N, 1, dtype=torch.long, device=joint.device)
        root_lp, kids, root_allowed = (t[:, 0] for t in self._children(joint, root, 0, history, stop_blocked, 1.0))
        cum, nodes, kept = root_lp[:, :-1], kids[:, :-1], []
        for level in range(1, self.depth + 1):
            cum, index = cum.topk(min(width, cum.shape[1]), dim=1)
            nodes = nodes.gather(1, index)
            if level < self.depth:
                log_p, kids, allowed = self._children(joint, nodes, level, history, stop_blocked, 1.0)
            else:
                log_p, kids, allowed = self._leaf(joint, nodes, history, 1.0)
            if track:
                kept.append((nodes, masked_entropy(log_p, allowed)))
            step = torch.where(nodes[..., None] >= 0, log_p, NEG_INF)
            cum = (cum[..., None] + step).reshape(N, -1)
            nodes = kids.reshape(N, -1)
        return Beam(cum, nodes, root_lp, root_allowed, kept)

    def _greedy_scores(self, beam: Beam, action, best, blocked) -> tuple[torch.Tensor, torch.Tensor]:
        """log p(action) and path entropy (N,) of the greedy action at temperature 1, read off the free
        beam instead of scoring the path again: the chosen label's path was kept at every level, and
        only the root renormalises when STOP is blocked (the same values as `_action_log_probs`)."""
        free_lp, allowed = beam.root_log_probs, beam.root_allowed
        allowed = allowed.clone()
        allowed[:, -1] &= ~(blocked & allowed[:, :-1].any(dim=1))
        root_lp = torch.where(blocked[:, None], masked_log_softmax(free_lp, allowed), free_lp)
        is_stop = action == self.stop_id
        path = self._table("ancestors")[torch.where(is_stop, 0, action)]  # (N, depth)
        top = path[:, :1]
        renormalised = best - free_lp.gather(1, top).squeeze(1) + root_lp.gather(1, top).squeeze(1)
        log_p = torch.where(is_stop, root_lp[:, -1], torch.where(blocked, renormalised, best))
        entropy = masked_entropy(root_lp, allowed)
        for level, (nodes, below) in enumerate(beam.kept):
            on_path = torch.where(nodes == path[:, level, None], below, 0.0).sum(dim=1)
            entropy = entropy + torch.where(is_stop, 0.0, on_path)
        return log_p, entropy

    def candidates(self, joint, emitted: HistoryEmitted, *, suppress_stop: bool, k: int):
        """The k most probable labels found by the cluster beam (exact log-probs) and STOP, last."""
        blocked = self._stop_blocked(emitted.history, suppress_stop)
        beam = self._beam(self._q(joint), emitted.history, blocked, max(self.beam, 1))
        top, index = beam.log_probs.topk(min(k, beam.log_probs.shape[1]), dim=1)
        ids = beam.labels.gather(1, index).masked_fill(top == NEG_INF, 0)
        stop_column = torch.full_like(ids[:, :1], self.stop_id)
        return torch.cat([top, beam.stop_log_prob[:, None]], dim=1), torch.cat([ids, stop_column], dim=1)

    def choose(
        self,
        joint,
        emitted: HistoryEmitted,
        *,
        suppress_stop: bool,
        sample: bool,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        with_first_probs: bool = False,
    ) -> Choice:
        """One step; greedy at temperature 1 reuses its beam for the log-prob, entropy and (with
        `with_first_probs`) the first-step probabilities rather than scoring again."""
        history, joint = emitted.history, self._q(joint)
        blocked = self._stop_blocked(history, suppress_stop)
        first = None
        if sample:
            action = self._sample(joint, history, blocked, temperature, generator)
            natural_stop = torch.zeros_like(action, dtype=torch.bool)
            log_p, entropy = self._action_log_probs(joint, action, history, blocked, temperature)
            if with_first_probs:
                first = self._first_probs(self._beam(joint, history, torch.zeros_like(blocked), self.beam))
            return Choice(action, log_p, entropy, natural_stop, first)
        reuse = temperature == 1.0
        beam = self._beam(joint, history, torch.zeros_like(blocked), self.beam, track=reuse)
        best, index = beam.log_probs.max(dim=1)
        natural_stop = beam.stop_log_prob > best
        label = beam.labels.gather(1, index[:, None]).squeeze(1)
        action = torch.where(natural_stop & ~blocked, self.stop_id, label)
        if reuse:
            log_p, entropy = self._greedy_scores(beam, action, best, blocked)
        else:
            log_p, entropy = self._action_log_probs(joint, action, history, blocked, temperature)
        return Choice(action, log_p, entropy, natural_stop, self._first_probs(beam) if with_first_probs else None)

    def _sample(self, joint, history, blocked, temperature, generator) -> torch.Tensor:
        """Exact ancestral sample of one action per row (STOP at the root, else down to a label)."""
        node = torch.zeros(joint.shape[0], dtype=torch.long, device=joint.device)
        is_stop = torch.zeros_like(node, dtype=torch.bool)
        for level in range(self.depth):
            log_p, kids, _ = (
                t[:, 0] for t in self._children(joint, node[:, None], level, history, blocked, temperature)
            )
            column = torch.multinomial(log_p.exp(), 1, generator=generator)
            if level == 0:
                is_stop = column.squeeze(1) == kids.shape[1] - 1
            node = torch.where(is_stop, 0, kids.gather(1, column).squeeze(1))
        log_p, labels, _ = (t[:, 0] for t in self._leaf(joint, node[:, None], history, temperature))
        label = labels.gather(1, torch.multinomial(log_p.exp(), 1, generator=generator)).squeeze(1)
        return torch.where(is_stop, self.stop_id, label)

    def _first_probs(self, beam: Beam) -> torch.Tensor:
        """Sparse (N, L) p(label) of the labels in the beam's leaves (a label sits in one leaf only)."""
        rows, columns = ((beam.labels >= 0) & (beam.log_probs > NEG_INF)).nonzero(as_tuple=True)
        indices = torch.stack([rows, beam.labels[rows, columns]])
        values = beam.log_probs[rows, columns].exp()
        shape = (beam.labels.shape[0], self.n_labels)
        return torch.sparse_coo_tensor(
            indices, values, shape, check_invariants=False
        ).coalesce()  # valid by construction

    def first_step_probs(self, joint, emitted: HistoryEmitted) -> torch.Tensor:
        """p(label) at this step for the labels of the beam's leaves, as a sparse COO (N, L) tensor
        (absent = 0: labels outside them); never a dense (N, L) tensor, which costs O(L) per document."""
        blocked = torch.zeros(joint.shape[0], dtype=torch.bool, device=joint.device)
        return self._first_probs(self._beam(self._q(joint), emitted.history, blocked, self.beam))

    def logits(self, joint: torch.Tensor) -> torch.Tensor:
        """Unmasked log p over all L + 1 actions (valid logits); O(L), for small label spaces / SB3."""
        joint = self._q(joint)
        shape = joint.shape[:-1]
        flat = joint.reshape(-1, joint.shape[-1])
        node_lp = torch.zeros(flat.shape[0], 1, device=joint.device)
        for level in range(self.depth):
            scores = flat @ self.node_weight[level].T + self.node_bias[level][:, 0]
            if level == 0:
                root = torch.log_softmax(torch.cat([scores, (flat @ self.stop_weight + self.stop_bias)[:, None]], 1), 1)
                node_lp, stop_lp = root[:, :-1], root[:, -1]
                continue
            node_lp = group_log_softmax(scores, self._table(f"children{level}")) + node_lp[:, self.tree.parents[level]]
        label_scores = flat @ self.label_weight.T + self.label_bias[:, 0]
        within = group_log_softmax(label_scores, self._table("leaf_members"))
        out = within + node_lp[:, self._table("ancestors")[:-1, -1]]
        return torch.cat([out, stop_lp[:, None]], dim=1).reshape(*shape, self.n_labels + 1)
