"""The chain policy's output layer, pluggable: flat (one softmax over L labels + STOP) or tree-factored.

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
(never a dense (B, L) mask); the flat layer keeps its dense mask.

Both layers offer the one interface the decoders and learners use (`agents.decoding`, `agents.rl`,
`agents.supervised`): `new_emitted`, `choose` (one step: greedy or sampled), `candidates` (beam
search), `first_step_probs` (ranking labels a chain never emitted), `sequence_log_probs` (teacher
forcing / re-scoring) and `logits` (dense scores for the policy's logit faces; O(L) on the tree).

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

from agents.tree_ops import (
    gathered_scores,
    group_log_softmax,
    masked_entropy,
    masked_log_softmax,
    padded_groups,
)
from envs.label_clusters import LabelTree

NEG_INF = float("-inf")
OUTPUT_KINDS = ("flat", "tree")


@dataclass
class Choice:
    """One step for a batch: action (B,), its log-prob and the entropy it was drawn with, and whether
    STOP beats every label when STOP is not suppressed (greedy set lengths use it)."""

    action: torch.Tensor
    log_prob: torch.Tensor
    entropy: torch.Tensor
    natural_stop: torch.Tensor


class FlatEmitted:
    """Emitted labels as a dense (B, L + 1) mask (the STOP column stays False)."""

    def __init__(self, mask: torch.Tensor) -> None:
        self.mask = mask

    def add(self, action: torch.Tensor, active: torch.Tensor, stop_id: int) -> None:
        newly = (active & (action != stop_id) & (action >= 0)).nonzero().squeeze(1)
        self.mask[newly, action[newly]] = True

    def select(self, rows: torch.Tensor) -> FlatEmitted:
        return FlatEmitted(self.mask[rows].clone())


class HistoryEmitted:
    """Emitted labels as a (B, T) history padded with -1: memory grows with the chain, not with L."""

    def __init__(self, history: torch.Tensor) -> None:
        self.history = history

    def add(self, action: torch.Tensor, active: torch.Tensor, stop_id: int) -> None:
        keep = active & (action != stop_id) & (action >= 0)
        self.history = torch.cat([self.history, torch.where(keep, action, -1)[:, None]], dim=1)

    def select(self, rows: torch.Tensor) -> HistoryEmitted:
        return HistoryEmitted(self.history[rows])


class FlatOutput(nn.Module):
    """Today's layer: Linear(hidden + doc, L + 1); every label scored at every step."""

    kind = "flat"

    def __init__(self, in_size: int, n_labels: int) -> None:
        super().__init__()
        self.n_labels, self.stop_id = n_labels, n_labels
        self.linear = nn.Linear(in_size, n_labels + 1)
        # Optional action constraint (emitted mask, suppress_stop) -> allowed, e.g. agents.mcg.MCGConstraint;
        # None = the chain rule: no repeats, STOP always (unless suppressed while a label is left).
        self.constraint: nn.Module | None = None

    def config(self) -> dict:
        """Nothing: flat is the default, so flat configs stay what they were before trees existed."""
        return {}

    def logits(self, joint: torch.Tensor) -> torch.Tensor:
        return self.linear(joint)

    def new_emitted(self, batch: int, device: torch.device) -> FlatEmitted:
        return FlatEmitted(torch.zeros(batch, self.n_labels + 1, dtype=torch.bool, device=device))

    def _allowed(self, emitted: FlatEmitted, suppress_stop: bool) -> torch.Tensor:
        if self.constraint is not None:
            return self.constraint(emitted.mask, suppress_stop)
        allowed = ~emitted.mask
        if suppress_stop:
            allowed[:, -1] = ~allowed[:, :-1].any(dim=1)
        return allowed

    def choose(
        self,
        joint,
        emitted: FlatEmitted,
        *,
        suppress_stop: bool,
        sample: bool,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Choice:
        logits = self.linear(joint)
        free = logits.masked_fill(emitted.mask if self.constraint is None else ~self._allowed(emitted, False), NEG_INF)
        allowed = self._allowed(emitted, suppress_stop)
        masked = logits.masked_fill(~allowed, NEG_INF)
        log_p = torch.log_softmax(masked / temperature, dim=-1)
        if sample:
            action = torch.multinomial(log_p.exp(), 1, generator=generator).squeeze(1)
        else:
            action = masked.argmax(dim=-1)
        chosen = log_p.gather(1, action[:, None]).squeeze(1)  # before the entropy: same gradient sums as ever
        entropy = -(log_p.exp() * log_p.masked_fill(~allowed, 0.0)).sum(dim=1)
        return Choice(action, chosen, entropy, free.argmax(dim=-1) == self.stop_id)

    def candidates(self, joint, emitted: FlatEmitted, *, suppress_stop: bool, k: int):
        """All L + 1 actions: (log-probs (N, L + 1), None = column index is the action; STOP last)."""
        allowed = self._allowed(emitted, suppress_stop)
        return torch.log_softmax(self.linear(joint).masked_fill(~allowed, NEG_INF), dim=-1), None

    def first_step_probs(self, joint, emitted: FlatEmitted) -> torch.Tensor:
        return torch.softmax(self.linear(joint).masked_fill(emitted.mask, NEG_INF), dim=-1)[:, : self.stop_id]

    def sequence_log_probs(
        self,
        joint,
        actions,
        *,
        suppress_stop_steps: int = 0,
        temperature: float = 1.0,
        mask_emitted: bool = True,
        with_entropy: bool = True,
    ):
        """Per-position log-prob and entropy (B, T) of `actions` (-1 padded; 0 on padding).

        The layer and the masks are computed at the N real positions only, not on the B x T grid:
        most of a teacher-forcing batch is padding when label-set sizes vary.
        """
        B, T = actions.shape
        present = actions >= 0
        rows, steps = present.nonzero(as_tuple=True)
        logits = self.linear(joint[rows, steps])  # (N, L + 1)
        n_actions = logits.shape[1]
        allowed = torch.ones_like(logits, dtype=torch.bool)
        if mask_emitted:  # the actions earlier in the same row, gathered into a spare last column otherwise
            earlier = (torch.arange(T, device=actions.device)[None, :] < steps[:, None]) & present[rows]
            before = torch.where(earlier, actions[rows], n_actions)
            emitted = torch.zeros(len(rows), n_actions + 1, dtype=torch.bool, device=logits.device)
            emitted.scatter_(1, before, True)
            allowed = ~emitted[:, :n_actions]
        if self.constraint is not None:
            if not mask_emitted:
                raise ValueError("an output constraint (MCG) needs mask_emitted=True")
            allowed = self.constraint(emitted[:, :n_actions], steps < suppress_stop_steps)
        elif suppress_stop_steps > 0:
            suppress = (steps < suppress_stop_steps) & allowed[:, :-1].any(dim=1)
            allowed[:, -1] &= ~suppress
        log_p_all = torch.log_softmax(logits.masked_fill(~allowed, NEG_INF) / temperature, dim=-1)
        chosen = log_p_all.gather(1, actions[rows, steps][:, None]).squeeze(1)
        grid = torch.zeros(B, T, dtype=logits.dtype, device=logits.device)
        entropy = grid
        if with_entropy:
            entropy = grid.index_put(
                (rows, steps), -(log_p_all.exp() * log_p_all.masked_fill(~allowed, 0.0)).sum(dim=1)
            )
        return grid.index_put((rows, steps), chosen), entropy


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

    def config(self) -> dict:
        config = {"output": "tree", "tree": self.tree.to_dict(), "tree_beam": self.beam}
        return config if self.query_size is None else {**config, "tree_query_size": self.query_size}

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
        anc = self._history_ancestors(history, level + 1)
        used = (anc[:, None, None, :] == kids[..., None]).sum(dim=-1)
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
        allowed = (labels >= 0) & ~(labels[..., None] == history[:, None, None, :]).any(dim=-1)
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
    ):
        """Per-position log-prob and path entropy (B, T) of `actions` (-1 padded; 0 on padding)."""
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
    def _beam(self, joint, history, stop_blocked, width: int):
        """Beam search over clusters: exact log-probs (N, K·M) of the labels in the `width` most probable
        leaves (-inf for padding), their ids, log p(STOP) (N,) and the root's log-mass of STOP-free
        children (for STOP-free comparisons)."""
        N = joint.shape[0]
        root = torch.zeros(N, 1, dtype=torch.long, device=joint.device)
        log_p, kids, _ = (t[:, 0] for t in self._children(joint, root, 0, history, stop_blocked, 1.0))
        stop_lp = log_p[:, -1]
        cum, nodes = log_p[:, :-1], kids[:, :-1]
        for level in range(1, self.depth + 1):
            cum, index = cum.topk(min(width, cum.shape[1]), dim=1)
            nodes = nodes.gather(1, index)
            if level < self.depth:
                log_p, kids, _ = self._children(joint, nodes, level, history, stop_blocked, 1.0)
            else:
                log_p, kids, _ = self._leaf(joint, nodes, history, 1.0)
            step = torch.where(nodes[..., None] >= 0, log_p, NEG_INF)
            cum = (cum[..., None] + step).reshape(N, -1)
            nodes = kids.reshape(N, -1)
        return cum, nodes, stop_lp

    def candidates(self, joint, emitted: HistoryEmitted, *, suppress_stop: bool, k: int):
        """The k most probable labels found by the cluster beam (exact log-probs) and STOP, last."""
        blocked = self._stop_blocked(emitted.history, suppress_stop)
        cum, labels, stop_lp = self._beam(self._q(joint), emitted.history, blocked, max(self.beam, 1))
        top, index = cum.topk(min(k, cum.shape[1]), dim=1)
        ids = labels.gather(1, index).masked_fill(top == NEG_INF, 0)
        stop_column = torch.full_like(ids[:, :1], self.stop_id)
        return torch.cat([top, stop_lp[:, None]], dim=1), torch.cat([ids, stop_column], dim=1)

    def choose(
        self,
        joint,
        emitted: HistoryEmitted,
        *,
        suppress_stop: bool,
        sample: bool,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Choice:
        history, joint = emitted.history, self._q(joint)
        blocked = self._stop_blocked(history, suppress_stop)
        if sample:
            action = self._sample(joint, history, blocked, temperature, generator)
            natural_stop = torch.zeros_like(action, dtype=torch.bool)
        else:
            free_cum, labels, free_stop = self._beam(joint, history, torch.zeros_like(blocked), self.beam)
            best, index = free_cum.max(dim=1)
            natural_stop = free_stop > best
            label = labels.gather(1, index[:, None]).squeeze(1)
            action = torch.where(natural_stop & ~blocked, self.stop_id, label)
        log_p, entropy = self._action_log_probs(joint, action, history, blocked, temperature)
        return Choice(action, log_p, entropy, natural_stop)

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

    def first_step_probs(self, joint, emitted: HistoryEmitted) -> torch.Tensor:
        """p(label) at this step for the labels of the beam's leaves; 0 for labels outside them."""
        blocked = torch.zeros(joint.shape[0], dtype=torch.bool, device=joint.device)
        cum, labels, _ = self._beam(self._q(joint), emitted.history, blocked, self.beam)
        probs = torch.zeros(joint.shape[0], self.n_labels, device=joint.device)
        return probs.scatter_add_(1, labels.clamp(min=0), torch.where(labels >= 0, cum.exp(), 0.0))

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


def make_output_layer(
    kind: str,
    in_size: int,
    n_labels: int,
    tree: LabelTree | dict | None,
    beam: int,
    sparse: bool = False,
    query_size: int | None = None,
):
    """The output layer `kind` ("flat" or "tree"; the tree needs a LabelTree over the n_labels)."""
    if kind not in OUTPUT_KINDS:
        raise ValueError(f"output must be one of {OUTPUT_KINDS}, got {kind!r}")
    if kind == "flat":
        if sparse or query_size is not None:
            raise ValueError(
                "sparse_label_grads and tree_query_size need output='tree' (the flat layer scores every label)"
            )
        return FlatOutput(in_size, n_labels)
    if tree is None:
        raise ValueError("output='tree' needs a label tree (envs.label_clusters.build_label_tree)")
    tree = LabelTree.from_dict(tree) if isinstance(tree, dict) else tree
    if tree.n_labels != n_labels:
        raise ValueError(f"label tree covers {tree.n_labels} labels, the policy has {n_labels}")
    return TreeOutput(in_size, tree, beam, sparse, query_size)
