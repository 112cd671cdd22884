"""The chain policy's output layer, pluggable: flat (one softmax over L labels + STOP) or tree-factored
(agents.tree_output.TreeOutput: a balanced label tree, O(B·depth + leaf) per step instead of O(L)).

Both layers offer the one interface the decoders and learners use (`agents.decoding`, `agents.rl`,
`agents.supervised`): `new_emitted`, `choose` (one step: greedy or sampled), `candidates` (beam
search), `first_step_probs` (ranking labels a chain never emitted), `sequence_log_probs` (teacher
forcing / re-scoring) and `logits` (dense scores for the policy's logit faces; O(L) on the tree).
The flat layer keeps emitted labels as a dense (B, L + 1) mask, or, for a shortlisting prior policy,
in its shortlist's M + 1 columns (agents.chain_step.ShortlistEmitted: a step costs O(M), not O(L)).
"""

from __future__ import annotations

import torch
from torch import nn

from labelchain.agents.chain_step import Choice, DocPrior, FlatEmitted, ShortlistEmitted
from labelchain.agents.tree_ops import gathered_scores
from labelchain.agents.tree_output import TreeOutput
from labelchain.envs.label_clusters import LabelTree

NEG_INF = float("-inf")
OUTPUT_KINDS = ("flat", "tree")


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

    def logits(self, joint: torch.Tensor) -> torch.Tensor:
        return self.linear(joint)

    def _scores(self, joint: torch.Tensor, emitted: FlatEmitted | ShortlistEmitted) -> torch.Tensor:
        """The step's logits: the layer's, plus the prior's per-document offsets when there is one;
        over the shortlist's M + 1 columns only for a `ShortlistEmitted` tracker."""
        if isinstance(emitted, ShortlistEmitted):
            return self.shortlist_scores(joint, emitted.ids) + emitted.bias
        logits = self.linear(joint)
        return logits if emitted.bias is None else logits + emitted.bias

    def shortlist_scores(self, joint: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """The layer's logits (N, C) of each row's own actions ids[n] (C of them, STOP = L included):
        the gathered weight rows, never the L + 1 of the dense layer (agents.tree_ops.gathered_scores
        picks the cheapest exact way)."""
        return gathered_scores(joint, self.linear.weight, self.linear.bias[:, None], ids)

    def new_emitted(self, batch: int, device: torch.device) -> FlatEmitted:
        return FlatEmitted(torch.zeros(batch, self.n_labels + 1, dtype=torch.bool, device=device))

    def _allowed(self, emitted: FlatEmitted | ShortlistEmitted, suppress_stop: bool | torch.Tensor) -> torch.Tensor:
        """Allowed actions (B, L + 1); `suppress_stop` is per row (a (B,) tensor) only with a constraint:
        an MCG chain counts its labels, not its steps (agents.decoding)."""
        if self.constraint is not None:
            return self.constraint(emitted.mask, suppress_stop)
        allowed = ~emitted.mask
        if suppress_stop:
            allowed[:, -1] = ~allowed[:, :-1].any(dim=1)
        return allowed

    def choose(
        self,
        joint,
        emitted: FlatEmitted | ShortlistEmitted,
        *,
        suppress_stop: bool | torch.Tensor,
        sample: bool,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        with_first_probs: bool = False,
    ) -> Choice:
        choice = self.choose_from_logits(
            self._scores(joint, emitted),
            emitted,
            suppress_stop=suppress_stop,
            sample=sample,
            temperature=temperature,
            generator=generator,
            with_first_probs=with_first_probs,
        )
        if not isinstance(emitted, ShortlistEmitted):
            return choice
        first = None if choice.first_probs is None else emitted.sparse_probs(choice.first_probs)
        action = emitted.ids.gather(1, choice.action[:, None]).squeeze(1)  # shortlist column -> label id
        return Choice(action, choice.log_prob, choice.entropy, choice.natural_stop, first)

    def choose_from_logits(
        self,
        logits: torch.Tensor,
        emitted: FlatEmitted | ShortlistEmitted,
        *,
        suppress_stop: bool | torch.Tensor,
        sample: bool,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
        with_first_probs: bool = False,
        sample_rows: tuple[torch.Tensor, int] | None = None,
    ) -> Choice:
        """`choose` on logits already computed, the prior's offsets included (agents.fused adds the
        per-document part once per batch).

        `sample_rows` = (rows, batch): these logits are rows `rows` of a batch of `batch` chains whose
        others have ended; sampling then draws what the full batch would (`sample_categorical`).
        Log-probabilities are fp32 whatever precision the logits came in (agents.precision).
        """
        logits, stop = logits.float(), logits.shape[1] - 1  # STOP is the last column (L, or M shortlisted)
        free = logits.masked_fill(emitted.mask if self.constraint is None else ~self._allowed(emitted, False), NEG_INF)
        allowed = self._allowed(emitted, suppress_stop)
        masked = logits.masked_fill(~allowed, NEG_INF)
        log_p = torch.log_softmax(masked / temperature, dim=-1)
        if sample:
            action = sample_categorical(log_p.exp(), generator, sample_rows)
        else:
            action = masked.argmax(dim=-1)
        chosen = log_p.gather(1, action[:, None]).squeeze(1)  # before the entropy: same gradient sums as ever
        entropy = -(log_p.exp() * log_p.masked_fill(~allowed, 0.0)).sum(dim=1)
        first = torch.softmax(free, dim=-1)[:, :stop] if with_first_probs else None  # = first_step_probs
        return Choice(action, chosen, entropy, free.argmax(dim=-1) == stop, first)

    def candidates(self, joint, emitted: FlatEmitted | ShortlistEmitted, *, suppress_stop: bool | torch.Tensor, k: int):
        """All L + 1 actions: (log-probs (N, L + 1), None = column index is the action; STOP last);
        with a `ShortlistEmitted` tracker the M + 1 shortlisted ones and their ids (N, M + 1)."""
        allowed = self._allowed(emitted, suppress_stop)
        log_p = torch.log_softmax(self._scores(joint, emitted).masked_fill(~allowed, NEG_INF), dim=-1)
        return log_p, emitted.ids if isinstance(emitted, ShortlistEmitted) else None

    def first_step_probs(self, joint, emitted: FlatEmitted | ShortlistEmitted) -> torch.Tensor:
        """Label probabilities under the unsuppressed distribution (a constraint's masks too), as `choose`:
        dense (B, L), or a sparse COO (B, L) over the shortlist for a `ShortlistEmitted` tracker."""
        blocked = emitted.mask if self.constraint is None else ~self._allowed(emitted, False)
        probs = torch.softmax(self._scores(joint, emitted).masked_fill(blocked, NEG_INF), dim=-1)[:, :-1]
        return emitted.sparse_probs(probs) if isinstance(emitted, ShortlistEmitted) else probs

    def sequence_log_probs(
        self,
        joint,
        actions,
        *,
        suppress_stop_steps: int = 0,
        temperature: float = 1.0,
        mask_emitted: bool = True,
        with_entropy: bool = True,
        prior: DocPrior | None = None,
        shortlist: ShortlistEmitted | None = None,
    ):
        """Per-position log-prob and entropy (B, T) of `actions` (-1 padded; 0 on padding).

        The layer and the masks are computed at the N real positions only, not on the B x T grid:
        most of a teacher-forcing batch is padding when label-set sizes vary. `prior`: the documents'
        offsets and shortlist (`ChainPolicy.document_prior`); or `shortlist` (agents.shortlist_step,
        for `prior` None): the same over the M + 1 shortlisted actions only, O(M) a position.
        """
        rows, steps = (actions >= 0).nonzero(as_tuple=True)
        if shortlist is not None:
            logits = self.shortlist_scores(joint[rows, steps], shortlist.ids[rows]) + shortlist.bias[rows]
        else:
            logits = self.linear(joint[rows, steps])
        return self.position_log_probs(
            logits if prior is None else logits + prior.bias[rows],
            actions,
            rows,
            steps,
            suppress_stop_steps=suppress_stop_steps,
            temperature=temperature,
            mask_emitted=mask_emitted,
            with_entropy=with_entropy,
            prior=prior,
            shortlist=shortlist,
        )

    def position_log_probs(
        self,
        logits: torch.Tensor,
        actions: torch.Tensor,
        rows: torch.Tensor,
        steps: torch.Tensor,
        *,
        suppress_stop_steps: int = 0,
        temperature: float = 1.0,
        mask_emitted: bool = True,
        with_entropy: bool = True,
        prior: DocPrior | None = None,
        shortlist: ShortlistEmitted | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`sequence_log_probs` from the logits (N, L + 1) of the real positions (rows, steps), in any
        order, the prior's offsets included; `prior.blocked` (the shortlist) is masked here. With
        `shortlist` the logits are (N, M + 1) over each row's shortlist columns (a target outside its
        shortlist gets log-prob -inf, as the dense path's blocked label does)."""
        B, T = actions.shape
        present = actions >= 0
        logits = logits.float()  # fp32 log-probabilities under bf16 products too (agents.precision)
        n_actions = logits.shape[1]
        columns = actions if shortlist is None else _shortlist_columns(shortlist, actions)  # -1 padding
        allowed = torch.ones_like(logits, dtype=torch.bool)
        if mask_emitted:  # the actions earlier in the same row, gathered into a spare last column otherwise
            earlier = (torch.arange(T, device=actions.device)[None, :] < steps[:, None]) & present[rows]
            before = torch.where(earlier, columns[rows], n_actions)
            emitted = torch.zeros(len(rows), n_actions + 1, dtype=torch.bool, device=logits.device)
            emitted.scatter_(1, before, True)
            allowed = ~emitted[:, :n_actions]
        if prior is not None and prior.blocked is not None:
            allowed = allowed & ~prior.blocked[rows]
        if shortlist is not None:
            allowed = allowed & ~shortlist.mask[rows]
        if self.constraint is not None:
            if not mask_emitted:
                raise ValueError("an output constraint (MCG) needs mask_emitted=True")
            labels_before = emitted[:, : self.constraint.n_labels].sum(dim=1)  # MCG: labels, not steps
            allowed = self.constraint(emitted[:, :n_actions], labels_before < suppress_stop_steps)
        elif suppress_stop_steps > 0:
            suppress = (steps < suppress_stop_steps) & allowed[:, :-1].any(dim=1)
            allowed[:, -1] &= ~suppress
        log_p_all = torch.log_softmax(logits.masked_fill(~allowed, NEG_INF) / temperature, dim=-1)
        target = columns[rows, steps]
        chosen = log_p_all.gather(1, target.clamp(max=n_actions - 1)[:, None]).squeeze(1)
        if shortlist is not None:
            chosen = chosen.masked_fill(target >= n_actions, NEG_INF)
        grid = torch.zeros(B, T, dtype=logits.dtype, device=logits.device)
        entropy = grid
        if with_entropy:
            entropy = grid.index_put(
                (rows, steps), -(log_p_all.exp() * log_p_all.masked_fill(~allowed, 0.0)).sum(dim=1)
            )
        return grid.index_put((rows, steps), chosen), entropy


def _shortlist_columns(shortlist: ShortlistEmitted, actions: torch.Tensor) -> torch.Tensor:
    """Actions (B, T; -1 padded) as columns of each row's shortlist: STOP -> M, a label outside it ->
    M + 1 (the spare column), padding stays -1. O(B T M)."""
    labels = shortlist.ids[:, None, :-1]
    hit = labels == actions[:, :, None]
    outside = hit.shape[2] + 1
    # a batch whose documents all have empty shortlists (only STOP) has no column to take argmax over
    first_hit = hit.float().argmax(dim=2) if hit.shape[2] else torch.zeros_like(actions)
    columns = torch.where(hit.any(dim=2), first_hit, outside)
    columns = torch.where(actions == shortlist.n_labels, shortlist.stop_column, columns)
    return torch.where(actions < 0, -1, columns)


def sample_categorical(
    probs: torch.Tensor, generator: torch.Generator | None, rows: tuple[torch.Tensor, int] | None = None
) -> torch.Tensor:
    """One draw per row of `probs`: `torch.multinomial(probs, 1)`, or with `rows` = (rows, batch) the
    draws rows `rows` of a `batch`-row call would make. torch's one-sample algorithm is argmax p / q
    with q ~ Exp(1) over the whole (batch, C) tensor, so the noise is drawn for all rows and read at
    `rows`: a batch whose ended chains were dropped samples exactly what the full batch did."""
    if rows is None:
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)
    index, batch = rows
    noise = torch.empty(batch, probs.shape[1], dtype=probs.dtype, device=probs.device)
    return (probs / noise.exponential_(1, generator=generator)[index]).argmax(dim=-1)


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
