"""The chain policy's training-time passes with the per-document work hoisted out of the label loop.

The GRU reads [label embedding; document encoding] at every step and the flat output layer reads
[GRU output; document encoding]: the document halves of both products are the same at every step
of a chain, yet `nn.GRU` and `Linear` recompute them per step (about 45% of a paper-size step's
FLOPs). Here they are computed once per document; the rest is the same arithmetic as the policy's
incremental and teacher-forced faces, with the same dropout draws in the same order, so results
agree with them to float rounding (tests/test_training_golden.py holds the learners to values
pinned before this module existed).

  * `FusedSteps`: the incremental face for rollouts in eval mode (no dropout): it also drops the
    chains that have ended from the batch, drawing the sampling noise the full batch would draw
    (`agents.output_layers.sample_categorical`), so sampled chains are unchanged;
  * `fused_teacher_forcing_loss`: the teacher-forcing loss with its own GRU loop over length-sorted
    rows (a packed sequence without `nn.GRU`'s per-step zero-filled (N, 3H) gradient buffers).

Both cover the flat output layer (with or without an MCG constraint); `fused_applies` says when.
For a shortlisting prior policy both score each document's shortlist only (agents.shortlist_step:
O(M) a step or position, not O(L)); `FusedSteps` then samples over the M + 1 allowed actions (the
same distribution as the dense step, not the same draws).
The profile and the measured speed-ups are in experiments/results/training_speed.md.
"""

from __future__ import annotations

import itertools
from typing import cast

import torch
from torch.nn import functional as F

from labelchain.agents.chain_step import Choice, FlatEmitted
from labelchain.agents.output_layers import FlatOutput
from labelchain.agents.policy import ChainPolicy, ChainState
from labelchain.agents.shortlist_step import compact_applies, shortlist_start
from labelchain.agents.tree_ops import gathered_scores

__all__ = ["FusedSteps", "fused_applies", "fused_teacher_forcing_loss", "gru_cell"]


def fused_applies(policy: ChainPolicy) -> bool:
    """Whether the fused passes cover this policy: a flat output layer and a one-layer GRU."""
    return policy.output.kind == "flat" and policy.gru.num_layers == 1 and not policy.gru.bidirectional


def flat_output(policy: ChainPolicy) -> FlatOutput:
    """The policy's flat output layer (the fused passes run only where `fused_applies`)."""
    return cast(FlatOutput, policy.output)


def gru_cell(gates_in: torch.Tensor, gates_hidden: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """One GRU step from its input and hidden projections (biases included), as torch computes it."""
    in_r, in_z, in_n = gates_in.chunk(3, dim=1)
    h_r, h_z, h_n = gates_hidden.chunk(3, dim=1)
    reset = torch.sigmoid(in_r + h_r)
    update = torch.sigmoid(in_z + h_z)
    new = torch.tanh(in_n + reset * h_n)
    return new + update * (hidden - new)


class _Split:
    """The policy's weights split into their label / hidden halves and their document halves."""

    def __init__(self, policy: ChainPolicy) -> None:
        gru, embed = policy.gru, policy.label_embedding.embedding_dim
        hidden = gru.hidden_size
        w_ih = cast(torch.Tensor, gru.weight_ih_l0)
        self.w_label, self.w_doc = w_ih[:, :embed], w_ih[:, embed:]
        self.b_in, self.w_hh, self.b_hh = (
            cast(torch.Tensor, t) for t in (gru.bias_ih_l0, gru.weight_hh_l0, gru.bias_hh_l0)
        )
        out = flat_output(policy).linear
        self.w_out, self.w_out_doc, self.b_out = out.weight[:, :hidden], out.weight[:, hidden:], out.bias
        value = policy.value_head
        self.w_value, self.w_value_doc, self.b_value = value.weight[:, :hidden], value.weight[:, hidden:], value.bias


class FusedSteps:
    """Eval-mode steps of a batch of chains (`ChainPolicy.step_joint` + the flat layer's `choose`).

    Per document once: the GRU input gates of the encoding, the output logits' and the value's
    document parts. Per step, on the chains still running only: the label embedding's gates, the
    hidden gates, the cell, the logits and the value from the GRU output.
    """

    def __init__(self, policy: ChainPolicy, state: ChainState) -> None:
        if policy.training:
            raise ValueError("FusedSteps runs the policy in eval mode (no dropout)")
        self.policy, self.w = policy, _Split(policy)
        doc = state.doc
        self.batch = doc.shape[0]
        self.rows = torch.arange(self.batch, device=doc.device)  # the batch rows still running
        self.doc_gates = torch.addmm(self.w.b_in, doc, self.w.w_doc.t())
        self.doc_logits = torch.addmm(self.w.b_out, doc, self.w.w_out_doc.t())
        self.ids: torch.Tensor | None = None  # a shortlisting prior policy: each row's M + 1 actions
        if state.prior is not None and state.prior.blocked is not None and flat_output(policy).constraint is None:
            self.ids, self.pad = _shortlist_ids(state.prior.blocked)
            bias = state.prior.bias.gather(1, self.ids).masked_fill(self.pad, 0.0)
            self.doc_logits = gathered_scores(doc, self.w.w_out_doc, self.w.b_out[:, None], self.ids) + bias
            self.no_bias = self.w.b_out.new_zeros(self.w.b_out.shape[0], 1)
        elif state.prior is not None:  # the prior's offsets are per document too (the shortlist is in `emitted`)
            self.doc_logits = self.doc_logits + state.prior.bias
        self.doc_value = torch.addmm(self.w.b_value, doc, self.w.w_value_doc.t())
        self.hidden = state.hidden.float()  # the recurrent state stays fp32 under bf16 products

    def _keep(self, active: torch.Tensor) -> None:
        """Drop the rows that have ended (`active` is over the full batch; it only ever shrinks)."""
        keep = active[self.rows]
        if bool(keep.all()):
            return
        index = keep.nonzero().squeeze(1)
        self.rows = self.rows[index]
        self.hidden, self.doc_gates = self.hidden[index], self.doc_gates[index]
        self.doc_logits, self.doc_value = self.doc_logits[index], self.doc_value[index]
        if self.ids is not None:
            self.ids, self.pad = self.ids[index], self.pad[index]

    def choose(
        self,
        last: torch.Tensor,
        active: torch.Tensor,
        emitted: FlatEmitted,
        *,
        sample: bool,
        temperature: float,
        generator: torch.Generator | None,
    ) -> tuple[Choice, torch.Tensor]:
        """One step for the `active` rows after actions `last` (both (B,)): a full-batch Choice and
        value (B,); rows that have ended get STOP, log-prob, entropy and value 0."""
        self._keep(active)
        rows, w, policy = self.rows, self.w, self.policy
        full = rows.shape[0] == self.batch
        embedded = policy.label_embedding(policy._input_ids(last if full else last[rows]))
        gates_in = torch.addmm(self.doc_gates, embedded, w.w_label.t())
        gates_hidden = torch.addmm(w.b_hh, self.hidden, w.w_hh.t())
        self.hidden = gru_cell(gates_in.float(), gates_hidden.float(), self.hidden)
        value = torch.addmm(self.doc_value, self.hidden, w.w_value.t()).squeeze(-1).float()
        mask = emitted.mask if full else emitted.mask[rows]
        if self.ids is not None:  # the shortlist's M + 1 columns: padding blocked, STOP last
            logits = self.doc_logits + gathered_scores(
                self.hidden.to(self.doc_logits.dtype), w.w_out, self.no_bias, self.ids
            )
            sub = FlatEmitted(mask.gather(1, self.ids) | self.pad)
        else:
            logits = torch.addmm(self.doc_logits, self.hidden, w.w_out.t())
            sub = emitted if full else FlatEmitted(mask)
        choice = flat_output(policy).choose_from_logits(
            logits,
            sub,
            suppress_stop=False,
            sample=sample,
            temperature=temperature,
            generator=generator,
            sample_rows=None if full else (rows, self.batch),
        )
        if self.ids is not None:
            action = self.ids.gather(1, choice.action[:, None]).squeeze(1)
            choice = Choice(action, choice.log_prob, choice.entropy, choice.natural_stop)
        if full:
            return choice, value
        stop = torch.full((self.batch,), policy.stop_id, dtype=choice.action.dtype, device=rows.device)
        zeros = value.new_zeros(self.batch)
        return Choice(
            stop.index_put((rows,), choice.action),
            zeros.index_put((rows,), choice.log_prob),
            zeros.index_put((rows,), choice.entropy),
            torch.zeros_like(stop, dtype=torch.bool).index_put((rows,), choice.natural_stop),
        ), zeros.index_put((rows,), value)


def _shortlist_ids(blocked: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A dense (B, L + 1) blocked mask (STOP last, never blocked) -> each row's allowed actions (B, M + 1)
    ascending, padded with the STOP id before STOP's own last column, and the padding (B, M + 1)."""
    allowed = ~blocked[:, :-1]
    stop = blocked.shape[1] - 1
    width = int(allowed.sum(dim=1).max()) if allowed.shape[0] else 0
    rows, labels = allowed.nonzero(as_tuple=True)
    counts = allowed.sum(dim=1)
    slots = torch.arange(rows.shape[0], device=rows.device) - (torch.cumsum(counts, 0) - counts)[rows]
    ids = torch.full((allowed.shape[0], width + 1), stop, dtype=torch.long, device=blocked.device)
    ids[rows, slots] = labels
    pad = ids == stop
    pad[:, -1] = False
    return ids, pad


class PackedGRU(torch.autograd.Function):
    """The GRU over a packed batch (rows sorted by length, step t = the first batch_sizes[t] rows),
    from the input gates of every position (N, 3H), with a hand-written backward: the hidden-weight
    gradient is one (3H x N) @ (N x H) product over all positions, where autograd through a step
    loop (and nn.GRU) adds one rank-n product per step. Outputs (N, H) in the same packed order;
    the hidden state and the cell stay fp32 (agents.precision)."""

    @staticmethod
    def forward(ctx, gates_in, h0, w_hh, b_hh, batch_sizes):  # type: ignore[override]
        hidden, outputs, saved = h0, [], []
        for n in batch_sizes:
            previous = hidden[:n]
            gates_hidden = torch.addmm(b_hh, previous, w_hh.t()).to(h0.dtype)
            offset = sum(len(o) for o in outputs)
            in_r, in_z, in_n = gates_in[offset : offset + n].chunk(3, dim=1)
            h_r, h_z, h_n = gates_hidden.chunk(3, dim=1)
            reset, update = torch.sigmoid(in_r + h_r), torch.sigmoid(in_z + h_z)
            new = torch.tanh(in_n + reset * h_n)
            hidden = new + update * (previous - new)
            outputs.append(hidden)
            saved.append(torch.cat([reset, update, new, h_n, previous], dim=1))
        ctx.batch_sizes, ctx.bf16 = batch_sizes, torch.is_autocast_enabled(h0.device.type)
        ctx.save_for_backward(w_hh, torch.cat(saved) if saved else h0.new_zeros(0, 5 * h0.shape[1]))
        ctx.h0_shape = h0.shape
        return torch.cat(outputs) if outputs else h0.new_zeros(0, h0.shape[1])

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        w_hh, saved = ctx.saved_tensors
        H = w_hh.shape[1]
        reset, update, new, h_n, previous = saved.split(H, dim=1)
        d_gates_in = grad_out.new_empty(grad_out.shape[0], 3 * H)
        d_gates_hidden = grad_out.new_empty(grad_out.shape[0], 3 * H)
        carry = grad_out.new_zeros(ctx.h0_shape)  # gradient reaching each row's hidden state from later steps
        ends = list(itertools.accumulate(ctx.batch_sizes))
        device_type = grad_out.device.type
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=ctx.bf16):
            for n, end in zip(reversed(ctx.batch_sizes), reversed(ends)):
                at = slice(end - n, end)
                d_h = grad_out[at] + carry[:n]
                u, c = update[at], new[at]
                d_new = d_h * (1 - u) * (1 - c * c)
                d_update = d_h * (previous[at] - c) * u * (1 - u)
                d_reset_pre = d_new * h_n[at] * reset[at] * (1 - reset[at])
                d_gates_in[at] = torch.cat([d_reset_pre, d_update, d_new], dim=1)
                d_gates_hidden[at] = torch.cat([d_reset_pre, d_update, d_new * reset[at]], dim=1)
                carry[:n] = d_h * u + (d_gates_hidden[at] @ w_hh).to(carry.dtype)
            d_w_hh = (d_gates_hidden.t() @ previous).to(w_hh.dtype)
        return d_gates_in, carry, d_w_hh, d_gates_hidden.sum(dim=0), None


def fused_teacher_forcing_loss(
    policy: ChainPolicy, X_batch, targets: torch.Tensor, *, mask_emitted: bool = True, compact: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed log-prob of the non-padding targets, document encodings): `teacher_forcing_loss`'s
    packed pass, with the same dropout draws (encoding, GRU-input mask per sequence, GRU outputs on
    the padded (B, T, H) grid) in the same order. `compact`: a shortlisting prior policy's positions
    score their shortlist only (agents.shortlist_step)."""
    w = _Split(policy)
    present = targets >= 0
    B, T = targets.shape
    shortlist = None
    if compact and compact_applies(policy, X_batch):
        state, shortlist = shortlist_start(policy, X_batch)
    else:
        state = policy.initial_state(X_batch)
    doc, embed = state.doc, policy.label_embedding.embedding_dim
    embedded = policy.label_embedding(policy._input_ids(policy.previous_labels(targets)))
    doc_in = doc
    if policy.training and policy.input_dropout > 0:  # one mask per sequence over [embedding; encoding]
        keep = F.dropout(doc.new_ones(B, 1, embed + doc.shape[1]), policy.input_dropout, training=True)
        embedded, doc_in = embedded * keep[:, :, :embed], doc * keep[:, 0, embed:]
    # Rows sorted by length, longest first: step t runs the first batch_sizes[t] rows (a packed batch);
    # positions in that packed, time-major order: (rows[k], steps[k]).
    lengths = present.sum(dim=1)
    order = torch.argsort(lengths, descending=True, stable=True)
    batch_sizes = [
        n for n in (lengths[None, :] > torch.arange(T, device=targets.device)[:, None]).sum(dim=1).tolist() if n
    ]
    counts = torch.tensor(batch_sizes, dtype=torch.long, device=targets.device)
    steps = torch.repeat_interleave(torch.arange(len(batch_sizes), device=targets.device), counts)
    rows = torch.cat([order[:n] for n in batch_sizes]) if batch_sizes else order[:0]
    doc_gates = torch.addmm(w.b_in, doc_in, w.w_doc.t())
    gates_in = torch.addmm(doc_gates[rows], embedded[rows, steps], w.w_label.t())
    packed = PackedGRU.apply(gates_in.float(), state.hidden[order].float(), w.w_hh, w.b_hh, batch_sizes)
    if policy.training and policy.dropout.p > 0:  # drawn over the padded grid, as the packed pass does
        packed = packed * policy.dropout(packed.new_ones(B, T, packed.shape[1]))[rows, steps]
    if shortlist is not None:  # per document its shortlist's document parts, per position the hidden parts
        ids = shortlist.ids
        doc_logits = gathered_scores(doc, w.w_out_doc, w.b_out[:, None], ids) + shortlist.bias
        no_bias = w.b_out.new_zeros(w.b_out.shape[0], 1)
        logits = doc_logits[rows] + gathered_scores(packed.to(doc_logits.dtype), w.w_out, no_bias, ids[rows])
    else:
        doc_logits = torch.addmm(w.b_out, doc, w.w_out_doc.t())
        if state.prior is not None:
            doc_logits = doc_logits + state.prior.bias
        logits = doc_logits[rows] + packed @ w.w_out.t()
    log_p, _ = flat_output(policy).position_log_probs(
        logits,
        targets,
        rows,
        steps,
        mask_emitted=mask_emitted,
        with_entropy=False,
        prior=state.prior,
        shortlist=shortlist,
    )
    return log_p.sum(), doc
