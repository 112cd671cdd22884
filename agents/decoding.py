"""Turning a chain policy into label sequences, label sets and label scores.

All decoders step a whole batch of documents together (no Python loop over documents), mask labels
already emitted (a chain never repeats) and stop a document at STOP or after `max_steps` actions
(STOP counts as an action, as in the environments).

Which output feeds which metric:
  * label **sets** (bool CSR) -> example/micro/macro F1, subset accuracy, Hamming loss: the labels
    emitted before the chain's own STOP;
  * label **scores** (dense (B, L)) -> P@k, nDCG@k: decode with STOP suppressed until `score_steps`
    labels are out (so every document ranks at least that many labels) and score a label by
    the position it was emitted at (earlier = higher, scores >= 1); labels never emitted rank
    below, by their first-step probability (score = p - 1, in [-1, 0]).

An MCG chain (agents.mcg) emits cluster tokens before its labels. Its ranking follows the same two
rules counted in labels, not actions: STOP stays blocked until `score_steps` *labels* are out (or no
action but STOP is left), and the "first-step probability" is taken per document at its first step
that is not a cluster token (the step that chose its first label, or STOP / the cap's last step if
it emitted none), under the unsuppressed constrained distribution of that step: a label outside the
chosen clusters (`restrict`) has probability 0 there. A plain chain's first label step is step 0, so
both rules are the plain ones for it (tests pin plain decoding to values computed before they came).

With a tree-factored output layer (agents.tree_output.TreeOutput) the same rules hold, with two
differences from the flat policy: each greedy step takes the most probable label among the leaves
kept by a beam search over clusters (beam `tree_beam`, 10 by default as in PECOS), which can miss
the global argmax the flat layer always finds; and the "first-step probability" of a never-emitted
label is its exact tree probability only if it sits in one of the leaves the first step's beam kept;
every other label scores exactly -1 (ties, broken by label id). So P@k / nDCG@k rank the chain's
labels first, then at most beam x leaf-size further labels by probability, then the rest unranked.

A prior policy with a shortlist (agents.prior_columns) steps in O(M), not O(L), in every decoder here
and in `sequence_log_probs` (agents.shortlist_step; `compact=False` keeps the dense O(L) step, the
same numbers to float rounding): its first-step probabilities are then a sparse COO tensor over the
shortlist, as the tree layer's are over its beam's leaves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from labelchain.agents.label_scores import labels_to_csr, marginal_counts_to_scores, position_scores
from labelchain.agents.policy import START, ChainPolicy
from labelchain.agents.precision import autocast
from labelchain.agents import shortlist_step
from labelchain.agents.shortlist_step import compact_applies, shortlist_start

NEG_INF = float("-inf")


@dataclass
class DecodeResult:
    """Decoded chains of a batch, all (B, T) and padded after each chain's end.

    actions: chosen actions including STOP (padding -1); labels: the same without STOP;
    log_probs / values: per action under the masked distribution it was chosen from (padding 0);
    n_labels_emitted: labels per chain; set_lengths: how many leading labels form the predicted set
    (differs from n_labels_emitted only when STOP was suppressed); first_probs: (B, L) label
    probabilities at the first label step (step 0; MCG: see the module) for ranking labels never
    emitted: dense from the flat layer, a sparse COO tensor from the tree layer (only the first
    beam's leaves are non-zero).
    """

    actions: torch.Tensor
    labels: torch.Tensor
    log_probs: torch.Tensor
    values: torch.Tensor
    n_labels_emitted: torch.Tensor
    set_lengths: torch.Tensor
    first_probs: torch.Tensor


def _check_cap(policy: ChainPolicy, max_steps: int | None) -> int:
    cap = policy.n_labels + 1 if max_steps is None else int(max_steps)
    if cap < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    return min(cap, policy.n_labels + 1)


def _stop_suppressed(policy: ChainPolicy, t: int, emitted, score_steps: int) -> bool | torch.Tensor:
    """Whether STOP is blocked at step `t` (until `score_steps` labels are out): a plain chain emits a
    label per step, so `t < score_steps` for every row; an MCG chain's cluster tokens do not count,
    so per row from its emitted label columns."""
    if policy.mcg is None:
        return t < score_steps
    return emitted.mask[:, : policy.label_columns].sum(dim=1) < score_steps


def _keep_first_label_probs(kept: torch.Tensor | None, probs: torch.Tensor, waiting: torch.Tensor) -> torch.Tensor:
    """This step's label probabilities for the rows still `waiting` for their first label step."""
    return probs if kept is None else torch.where(waiting[:, None], probs, kept)


def _before_labels(action: torch.Tensor, policy: ChainPolicy) -> torch.Tensor:
    """Actions that are cluster tokens (MCG: ids label_columns..stop_id-1; none in a plain chain)."""
    return (action >= policy.label_columns) & (action != policy.stop_id)


def _finish(actions: list[torch.Tensor], log_probs: list, values: list, stop_id: int, first_probs, set_len):
    actions_t = torch.stack(actions, dim=1)
    labels = actions_t.masked_fill(actions_t == stop_id, START)
    n_emitted = (labels >= 0).sum(dim=1)
    set_lengths = n_emitted if set_len is None else torch.minimum(set_len, n_emitted)
    return DecodeResult(
        actions_t,
        labels,
        torch.stack(log_probs, dim=1),
        torch.stack(values, dim=1),
        n_emitted,
        set_lengths,
        first_probs,
    )


def rollout(
    policy: ChainPolicy,
    X,
    *,
    max_steps: int | None = None,
    sample: bool = False,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    suppress_stop_steps: int = 0,
    compact: bool = True,
) -> DecodeResult:
    """Greedy (`sample=False`) or sampled decoding of a batch; gradients flow if not under no_grad.

    Greedy with STOP suppressed is also exact greedy for the sets: until greedy would pick STOP the
    two chains coincide, so `set_lengths` marks the first step where STOP was the argmax.
    `compact`: a shortlisting prior policy steps over its shortlist only (see the module).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    cap = _check_cap(policy, max_steps)
    state, emitted = _start(policy, X, compact)
    batch, device, stop_id = state.doc.shape[0], state.doc.device, policy.stop_id
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    last = torch.full((batch,), START, dtype=torch.long, device=device)
    set_len = torch.full((batch,), cap, dtype=torch.long, device=device)
    actions, log_probs, values, first_probs = [], [], [], None
    waiting = torch.ones(batch, dtype=torch.bool, device=device)  # before the first label step (MCG)
    for t in range(cap):
        joint, value, state = policy.step_joint(state, last)
        want_first = t == 0 or (policy.mcg is not None and bool(waiting.any()))
        choice = policy.output.choose(
            joint,
            emitted,
            suppress_stop=_stop_suppressed(policy, t, emitted, suppress_stop_steps),
            sample=sample,
            temperature=temperature,
            generator=generator,
            with_first_probs=want_first,  # the same state's first_step_probs, from the same scores
        )
        if want_first:
            assert choice.first_probs is not None
            first_probs = _keep_first_label_probs(first_probs, choice.first_probs.detach(), waiting)
        action = choice.action
        if not sample:
            natural_stop = choice.natural_stop & ~done & (set_len == cap)
            set_len = torch.where(natural_stop, torch.full_like(set_len, t), set_len)
        action = action.masked_fill(done, START)
        actions.append(action)
        log_probs.append(choice.log_prob.masked_fill(done, 0.0))
        values.append(value.masked_fill(done, 0.0))
        emitted.add(action, ~done, stop_id)  # STOP is never masked
        waiting &= _before_labels(action, policy)  # a finished row's padding (-1) ends its wait too
        done = done | (action == stop_id)
        last = action
        if bool(done.all()):
            break
    return _finish(actions, log_probs, values, stop_id, first_probs, None if sample else set_len)


def _start(policy: ChainPolicy, X, compact: bool):
    """The chains' start state and emitted-label tracker: a shortlisting prior policy's compact one
    (agents.shortlist_step) when `compact` and it applies, else the output layer's."""
    if compact and compact_applies(policy, X):
        return shortlist_start(policy, X)
    state = policy.initial_state(X)
    return state, policy.new_emitted(state)


def greedy_decode(
    policy: ChainPolicy, X, *, max_steps: int | None = None, suppress_stop_steps: int = 0, compact: bool = True
) -> DecodeResult:
    return rollout(policy, X, max_steps=max_steps, suppress_stop_steps=suppress_stop_steps, compact=compact)


@torch.no_grad()
def beam_search(
    policy: ChainPolicy,
    X,
    *,
    beam_width: int = 5,
    max_steps: int | None = None,
    suppress_stop_steps: int = 0,
    length_penalty: float = 0.0,
    compact: bool = True,
) -> DecodeResult:
    """Most probable chains by beam search (sum of log-probs / length**length_penalty).

    Chains that reached STOP or the cap keep their score and stay in the beam. Returns the best
    beam per document; `log_probs`/`values` are per chosen action along that beam, and (MCG)
    `first_probs` are those of that beam's first label step.
    """
    if beam_width < 1:
        raise ValueError(f"beam_width must be >= 1, got {beam_width}")
    cap = _check_cap(policy, max_steps)
    K, stop_id = beam_width, policy.stop_id
    state0, emitted0 = _start(policy, X, compact)
    batch, device = state0.doc.shape[0], state0.doc.device
    repeat = torch.arange(batch, device=device).repeat_interleave(K)
    state, emitted = state0.select(repeat), emitted0.select(repeat)
    scores = torch.full((batch, K), NEG_INF, device=device)
    scores[:, 0] = 0.0
    finished = torch.zeros(batch * K, dtype=torch.bool, device=device)
    last = torch.full((batch * K,), START, dtype=torch.long, device=device)
    history = torch.zeros(batch * K, 0, dtype=torch.long, device=device)
    step_logp = torch.zeros(batch * K, 0, device=device)
    step_values = torch.zeros(batch * K, 0, device=device)
    first_probs = None  # plain: step 0 of the first beam (the K are one state there); MCG: per beam
    per_beam, waiting = policy.mcg is not None, torch.ones(batch * K, dtype=torch.bool, device=device)
    for t in range(cap):
        joint, value, state = policy.step_joint(state, last)
        if t == 0 and not per_beam:
            first_probs = policy.output.first_step_probs(joint[::K], emitted.select(torch.arange(0, batch * K, K)))
        elif per_beam and bool(waiting.any()):
            first_probs = _keep_first_label_probs(first_probs, policy.output.first_step_probs(joint, emitted), waiting)
        suppress = _stop_suppressed(policy, t, emitted, suppress_stop_steps)
        log_p, ids = policy.output.candidates(joint, emitted, suppress_stop=suppress, k=K)
        # A finished chain has exactly one continuation (the last column, STOP, recorded as padding) at no cost.
        C = log_p.shape[1]
        carry = torch.full_like(log_p, NEG_INF)
        carry[:, -1] = 0.0
        log_p = torch.where(finished[:, None], carry, log_p)
        candidates = (scores.reshape(-1, 1) + log_p).reshape(batch, K * C)
        scores, flat_index = candidates.topk(K, dim=1)
        parent = (flat_index // C + torch.arange(batch, device=device)[:, None] * K).reshape(-1)
        column = (flat_index % C).reshape(-1)
        action = column if ids is None else ids[parent, column]
        was_finished = finished[parent]
        action = action.masked_fill(was_finished, START)
        state, emitted, last = state.select(parent), emitted.select(parent), action
        history = torch.cat([history[parent], action[:, None]], dim=1)
        chosen_logp = log_p[parent, column].masked_fill(was_finished, 0.0)
        step_logp = torch.cat([step_logp[parent], chosen_logp[:, None]], dim=1)
        step_values = torch.cat([step_values[parent], value[parent].masked_fill(was_finished, 0.0)[:, None]], dim=1)
        emitted.add(action, ~was_finished, stop_id)
        if per_beam:
            assert first_probs is not None
            first_probs, waiting = first_probs[parent], waiting[parent] & _before_labels(action, policy)
        finished = was_finished | (action == stop_id)
        if bool(finished.all()):
            break
    lengths = (history >= 0).sum(dim=1).clamp(min=1).float().reshape(batch, K)
    best = (scores / lengths**length_penalty).argmax(dim=1) + torch.arange(batch, device=device) * K
    return _finish(
        list(history[best].unbind(1)),
        list(step_logp[best].unbind(1)),
        list(step_values[best].unbind(1)),
        stop_id,
        first_probs[best] if per_beam and first_probs is not None else first_probs,
        None,
    )


def sequence_log_probs(
    policy: ChainPolicy,
    X,
    actions: torch.Tensor,
    *,
    suppress_stop_steps: int = 0,
    temperature: float = 1.0,
    compact: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Re-score recorded `actions` (B, T, STOP included, -1 padded) in one teacher-forced pass.

    Returns per-action log-probs, entropies and values (B, T), zero on padding, under the same
    masking the decoders use, with gradients; this is what policy-gradient learners differentiate.
    `compact`: a shortlisting prior policy's output layer scores its shortlist only (see the module).
    """
    actions = torch.as_tensor(actions, dtype=torch.long, device=policy.input_weight.device)
    joint, values = policy.sequence_joint(X, actions)
    log_p, entropy = shortlist_step.sequence_log_probs(
        policy, joint, actions, X, compact=compact, suppress_stop_steps=suppress_stop_steps, temperature=temperature
    )
    return log_p, entropy, torch.where(actions >= 0, values, torch.zeros((), device=values.device))


SCORE_MODES = ("position", "position_aux", "aux", "marginal")


def marginal_scores(
    policy: ChainPolicy,
    X,
    *,
    n_samples: int,
    max_steps: int | None,
    score_steps: int,
    generator: torch.Generator,
    tiebreak: torch.Tensor,
) -> np.ndarray:
    """Label marginals from `n_samples` sampled chains per document (STOP suppressed until
    `score_steps` labels are out, as for position scores); `tiebreak` (B, L) in [0, 1] orders equal counts."""
    rows = X.shape[0]
    repeated = X[np.repeat(np.arange(rows), n_samples)]
    chains = rollout(
        policy, repeated, max_steps=max_steps, sample=True, generator=generator, suppress_stop_steps=score_steps
    )
    emitted = labels_to_csr(chains.labels, policy.n_labels).toarray().reshape(rows, n_samples, policy.n_labels)
    return marginal_counts_to_scores(emitted.sum(axis=1), n_samples, tiebreak.cpu().numpy())


def _ranking_scores(
    policy: ChainPolicy,
    rows,
    ranked: DecodeResult,
    score_mode: str,
    n_samples: int,
    max_steps: int | None,
    score_steps: int,
    generator: torch.Generator,
) -> np.ndarray:
    """Ranking scores of one batch under `score_mode` (see SCORE_MODES and `predict`)."""
    aux = torch.sigmoid(policy.aux_logits(rows).float()) if score_mode in ("aux", "position_aux") else None
    if score_mode == "position":
        return position_scores(ranked.labels, policy.n_labels, ranked.first_probs)
    if score_mode == "aux":
        assert aux is not None
        return aux.cpu().numpy().astype(np.float32)
    if score_mode == "position_aux":
        return position_scores(ranked.labels, policy.n_labels, aux)
    tiebreak = ranked.first_probs if policy.label_head is None else torch.sigmoid(policy.aux_logits(rows).float())
    tiebreak = tiebreak.to_dense() if tiebreak.is_sparse else tiebreak
    return marginal_scores(
        policy,
        rows,
        n_samples=n_samples,
        max_steps=max_steps,
        score_steps=score_steps,
        generator=generator,
        tiebreak=tiebreak,
    )


@torch.no_grad()
def predict(
    policy: ChainPolicy,
    X,
    *,
    batch_size: int = 512,
    max_steps: int | None = None,
    method: str = "greedy",
    beam_width: int = 5,
    score_steps: int = 5,
    score_mode: str = "position",
    n_samples: int = 16,
    seed: int = 0,
    precision: str = "fp32",
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Label sets (bool CSR) and ranking scores (float32 (n, L)) for every row of X, in eval mode.

    For an MCG policy (agents.mcg) the chain emits cluster tokens first; only the L label columns are
    returned, and `score_steps` counts labels only (see the module for its first-step probabilities).

    Greedy needs one pass per batch (see `rollout`); beam search needs two (free and STOP-suppressed).
    score_mode: "position" (emission position; never-emitted labels by first-step probability),
    "position_aux" (the same, never-emitted labels by the auxiliary head), "aux" (the head's
    probabilities alone), "marginal" (share of `n_samples` sampled chains emitting the label, seeded
    by `seed`; ties by the auxiliary head if the policy has one, else by first-step probability).
    `precision` "bf16": bf16 matrix products (agents.precision; scores and metrics stay fp32).
    """
    if method not in ("greedy", "beam"):
        raise ValueError(f"method must be 'greedy' or 'beam', got {method!r}")
    if score_mode not in SCORE_MODES:
        raise ValueError(f"score_mode must be one of {SCORE_MODES}, got {score_mode!r}")
    if score_mode in ("aux", "position_aux") and policy.label_head is None:
        raise ValueError(f"score_mode {score_mode!r} needs a policy with an auxiliary head (aux_weight > 0)")
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    generator = torch.Generator(device=policy.input_weight.device).manual_seed(seed)
    was_training = policy.training
    policy.eval()
    sets, scores = [], []
    try:
        with autocast(precision, policy.input_weight.device.type):  # scores and sets stay fp32
            for begin in range(0, X.shape[0], batch_size):
                rows = X[begin : begin + batch_size]
                if method == "greedy":
                    result = greedy_decode(policy, rows, max_steps=max_steps, suppress_stop_steps=score_steps)
                    sets.append(labels_to_csr(result.labels, policy.n_labels, result.set_lengths))
                    ranked = result
                else:
                    free = beam_search(policy, rows, beam_width=beam_width, max_steps=max_steps)
                    sets.append(labels_to_csr(free.labels, policy.n_labels))
                    ranked = beam_search(
                        policy, rows, beam_width=beam_width, max_steps=max_steps, suppress_stop_steps=score_steps
                    )
                scores.append(
                    _ranking_scores(policy, rows, ranked, score_mode, n_samples, max_steps, score_steps, generator)
                )
    finally:
        policy.train(was_training)
    L = policy.label_columns  # MCG: the cluster tokens' columns are dropped
    if not sets:
        return sp.csr_matrix((0, L), dtype=bool), np.zeros((0, L), np.float32)
    Y_pred, Y_scores = sp.vstack(sets, format="csr").astype(bool), np.vstack(scores)
    return (Y_pred, Y_scores) if L == policy.n_labels else (Y_pred[:, :L], np.ascontiguousarray(Y_scores[:, :L]))
