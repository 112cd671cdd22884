"""`LabelChainVectorEnv`: N label-chain episodes stepped together with array operations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from gymnasium.error import ResetNeeded
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from labelchain.envs.chain_task import ChainTask, make_task
from labelchain.envs.data.dataset import Dataset
from labelchain.envs.label_env import DOC_ORDERS
from labelchain.envs.actions import integer_array
from labelchain.envs.mcg import MCGSpec, emitted_mask
from labelchain.envs.rewards import DEFAULT_REWARD_MODE, chain_quality
from labelchain.envs.shortlist import allowed_actions


class LabelChainVectorEnv(VectorEnv):
    """The `LabelChainEnv` semantics for ``num_envs`` documents at once, without a per-document loop.

    Observations, actions, rewards and termination are those of `LabelChainEnv` (see its docstring),
    batched: ``features`` (N, d), ``history`` (N, cap), ``step`` (N,). Masks of valid actions are in
    ``infos["action_mask"]`` (N, L + 1), and the documents in ``infos["doc_index"]``.

    Autoreset: ``autoreset_mode=AutoresetMode.NEXT_STEP`` (default, as Gymnasium's own vector envs):
    the step after a sub-env ends starts a new document there, ignores its action and pays 0.
    ``AutoresetMode.DISABLED`` suits batched rollouts of whole documents: an ended sub-env stays
    ended (actions ignored, reward 0, terminated/truncated False) until
    ``reset(options={"reset_mask": mask})``. ``reset(options={"doc_indices": docs})`` picks the
    documents of the envs being reset (in env order); otherwise ``doc_order`` decides.

    Masks and large label spaces: ``dense_masks=True`` (default; what sb3-contrib and the flat
    policy consume) keeps the action masks and the current documents' gold sets as dense (N, L + 1)
    and (N, L) bool arrays, updated in O(N) per step (a gather is ~40x faster than a binary search),
    and returns the mask in ``infos["action_mask"]``: 2 N x L bytes, 200 MB for N = 1,000 at
    L = 100,000, and O(L) per document reset. ``dense_masks=False`` keeps nothing of size L: per
    document only the (N, cap) history and counters; a repeat is found in the history (O(N x cap))
    and gold membership by binary search in the task's sorted (doc, label) keys (O(N log nnz)); no
    mask in ``infos``, and ``action_masks()`` builds one from the histories only when called, in
    O(N x (L + 1)). Both give the same observations and rewards (tested).

    Buffers: with ``copy=False`` (default, for speed) the three observation arrays (``features``,
    ``history``, ``step``) and ``infos["action_mask"]`` are the env's own buffers, overwritten in place
    by the next ``step``/``reset``; copy what you keep, or pass ``copy=True`` (as Gymnasium's
    ``SyncVectorEnv(copy=True)``) to get fresh arrays every step, about 3x fewer label-steps per
    second on delicious. ``infos["doc_index"]`` is always a fresh array.

    MCG (``mcg=`` an `envs.mcg.MCGSpec`): the split's labels are augmented with their clusters,
    actions L..L+C-1 are cluster tokens under the constraint of `envs.mcg` (a disallowed action is a
    wasted step, as a repeat is), and the reward counts labels only.

    Shortlist (``shortlist=`` an (n_docs, L) bool matrix, `envs.shortlist`; not with ``mcg``): each
    document may emit only its shortlisted labels; the masks are `envs.shortlist.allowed_actions`
    (not emitted AND shortlisted; STOP always) and an out-of-shortlist label is a wasted step, as a
    repeat is. ``dense_masks=True`` applies the shortlist row once per document reset (O(L), as the
    mask reset already is); ``dense_masks=False`` stays free of size-L state: membership is a binary
    search in the task's sorted (doc, label) shortlist keys, O(N log nnz) per step.

    Order: ``step()`` before the first ``reset()`` raises ``gymnasium.error.ResetNeeded`` (there are
    no documents yet); ``num_envs`` must be >= 1.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(
        self,
        num_envs: int = 1,
        dataset: str | Path | Dataset | ChainTask = "emotions",
        split: str = "train",
        *,
        reward: str = "f1",
        reward_mode: str = DEFAULT_REWARD_MODE,
        max_steps: int | None = None,
        doc_order: str = "random",
        data_dir: str | Path | None = None,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        copy: bool = False,
        dense_masks: bool = True,
        mcg: MCGSpec | None = None,
        shortlist: Any = None,
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        if doc_order not in DOC_ORDERS:
            raise ValueError(f"doc_order must be one of {DOC_ORDERS}, got {doc_order!r}")
        autoreset_mode = AutoresetMode(autoreset_mode)
        if autoreset_mode == AutoresetMode.SAME_STEP:
            raise ValueError("autoreset_mode must be NEXT_STEP or DISABLED, not SAME_STEP")
        self.task = make_task(
            dataset,
            split,
            reward=reward,
            reward_mode=reward_mode,
            max_steps=max_steps,
            data_dir=data_dir,
            mcg=mcg,
            shortlist=shortlist,
        )
        self.metadata = {**self.metadata, "autoreset_mode": autoreset_mode}
        self.num_envs, self.doc_order, self.copy = int(num_envs), doc_order, copy
        self.dense_masks = dense_masks
        self.single_observation_space = self.task.observation_space()
        self.single_action_space = self.task.action_space()
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        n, task = self.num_envs, self.task
        self.docs = np.zeros(n, dtype=np.int64)
        # The action masks and gold sets of the current documents, dense only when asked for.
        self.valid = np.ones((n, task.n_labels + 1), dtype=bool) if dense_masks else None
        self.gold = np.zeros((n, task.n_labels), dtype=bool) if dense_masks else None
        self.history = np.full((n, task.max_steps), task.n_labels, dtype=np.int64)
        self.n_emitted = np.zeros(n, dtype=np.int64)
        self.n_scored = np.zeros(n, dtype=np.int64)  # emitted actions the reward counts (MCG: labels only)
        self.steps = np.zeros(n, dtype=np.int64)
        self.tp = np.zeros(n, dtype=np.int64)
        self.quality = np.zeros(n, dtype=np.float64)
        self.features = np.zeros((n, task.n_features), dtype=np.float32)
        self.ended = np.zeros(n, dtype=bool)
        self._cursor = 0
        self._arange = np.arange(n)
        self._has_reset = False

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        options = options or {}
        mask = np.asarray(options.get("reset_mask", np.ones(self.num_envs, dtype=bool)), bool)
        if mask.shape != (self.num_envs,):
            raise ValueError(f"options['reset_mask'] must have shape ({self.num_envs},)")
        if not self._has_reset and not mask.all():
            raise ResetNeeded("the first reset() must reset every sub-env (no reset_mask)")
        self._start_documents(np.flatnonzero(mask), options.get("doc_indices"))
        self._has_reset = True
        return self._observation(), self._infos()

    def step(
        self, actions: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if not self._has_reset:
            raise ResetNeeded("LabelChainVectorEnv.step() needs reset() first (no documents yet)")
        task = self.task
        actions = integer_array(actions, "actions").reshape(self.num_envs)  # 1.5 refused, never truncated
        if actions.min() < 0 or actions.max() > task.n_labels:
            bad = int(np.flatnonzero((actions < 0) | (actions > task.n_labels))[0])
            raise ValueError(f"actions[{bad}]={actions[bad]} is outside 0..{task.n_labels}")
        idle = self.ended.copy()
        if self.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP and idle.any():
            self._start_documents(np.flatnonzero(idle), None)
        active = ~idle
        stop = active & (actions == task.stop_action)
        rows = np.flatnonzero(active & ~stop)
        labels = actions[rows]
        valid, gold = self.valid, self.gold
        if valid is not None and gold is not None:
            fresh = valid[rows, labels]
            rows, labels = rows[fresh], labels[fresh]
            valid[rows, labels] = False
            hits = gold[rows, labels]
        else:  # a repeat is a label already in the row's history: O(N x cap), not O(N x L)
            if task.mcg is None:  # an out-of-shortlist label is refused as a repeat is
                fresh = ~(self.history[rows] == labels[:, None]).any(axis=1)
                fresh &= task.in_shortlist(self.docs[rows], labels)
            else:  # MCG's constraint needs the emitted mask: O(N x L) per step
                fresh = self._mcg_allowed(rows)[np.arange(len(rows)), labels]
            rows, labels = rows[fresh], labels[fresh]
            hits = task.is_gold(self.docs[rows], labels)
        scored = labels < task.scored_labels
        self.history[rows, self.n_emitted[rows]] = labels
        self.n_emitted[rows] += 1
        self.n_scored[rows] += scored
        self.tp[rows] += hits & scored
        if task.mcg is not None and valid is not None:
            valid[rows] = self._mcg_allowed(rows)
        self.steps[active] += 1
        quality = chain_quality(self.tp, self.n_scored, task.scored_gold_count[self.docs], task.reward)
        terminated = stop
        truncated = active & ~stop & (self.steps >= task.max_steps)
        finished = terminated | truncated
        if task.reward_mode == "delta":
            rewards = np.where(active, quality - self.quality, 0.0)
            self.quality = np.where(active, quality, self.quality)
        else:
            rewards = np.where(finished, quality, 0.0)
        self.ended = idle | finished if self._absorbing else finished
        return self._observation(), rewards, terminated, truncated, self._infos()

    @property
    def _absorbing(self) -> bool:
        return self.metadata["autoreset_mode"] == AutoresetMode.DISABLED

    def _mcg_allowed(self, envs: np.ndarray) -> np.ndarray:
        """MCG's allowed actions (len(envs), A + 1) of sub-envs `envs`, from their histories."""
        assert self.task.mcg is not None
        return self.task.mcg.allowed_actions(emitted_mask(self.history[envs], self.task.n_labels))

    def action_masks(self) -> np.ndarray:
        """Valid actions per sub-env (N, L + 1): labels not yet emitted (and shortlisted, with a
        shortlist: `envs.shortlist.allowed_actions`), and STOP (with ``mcg``, the constraint of `envs.mcg`).

        Without ``dense_masks`` this builds the mask from the histories on every call: O(N x (L + 1)).
        """
        if self.valid is None and self.task.mcg is not None:
            return self._mcg_allowed(self._arange)
        if self.valid is None and self.task.shortlist is not None:
            emitted = emitted_mask(self.history, self.task.n_labels)
            return allowed_actions(emitted, self.task.shortlist_rows(self.docs))
        if self.valid is None:
            masks = np.ones((self.num_envs, self.task.n_labels + 1), dtype=bool)
            masks[self._arange[:, None], self.history] = False  # empty slots hold L (= STOP) ...
            masks[:, self.task.stop_action] = True  # ... and STOP is always valid
            return masks
        return self.valid.copy() if self.copy else self.valid

    def _start_documents(self, envs: np.ndarray, doc_indices: Any) -> None:
        """Put fresh documents into sub-envs `envs`, clearing their chains."""
        task, k = self.task, len(envs)
        if doc_indices is not None:
            docs = np.asarray(doc_indices, dtype=np.int64).reshape(-1)
            if docs.shape != (k,):
                raise ValueError(f"options['doc_indices'] needs {k} entries, got {docs.shape[0]}")
            if k and (docs.min() < 0 or docs.max() >= task.n_docs):
                raise ValueError(f"options['doc_indices'] must lie in 0..{task.n_docs - 1}")
        elif self.doc_order == "sequential":
            docs = (self._cursor + np.arange(k)) % task.n_docs
            self._cursor = int((self._cursor + k) % task.n_docs)
        else:
            docs = self.np_random.integers(task.n_docs, size=k)
        self.docs[envs] = docs
        self.features[envs] = task.features(docs)
        if self.valid is not None and self.gold is not None:
            self.valid[envs] = True
            self.gold[envs] = False
            starts, counts = task.gold_indptr[docs], task.gold_count[docs]
            owner = np.repeat(envs, counts)  # one entry per gold label of the new documents
            offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
            self.gold[owner, task.split.Y.indices[np.repeat(starts, counts) + offsets]] = True
        self.history[envs] = task.n_labels
        if task.mcg is not None and self.valid is not None:
            self.valid[envs] = self._mcg_allowed(envs)
        if task.shortlist is not None and self.valid is not None:
            self.valid[envs] = allowed_actions(np.zeros((k, task.n_labels), dtype=bool), task.shortlist_rows(docs))
        for counter in (self.n_emitted, self.n_scored, self.steps, self.tp):
            counter[envs] = 0
        self.quality[envs] = 0.0
        self.ended[envs] = False

    def _observation(self) -> dict[str, np.ndarray]:
        if self.copy:
            return {"features": self.features.copy(), "history": self.history.copy(), "step": self.steps.copy()}
        return {"features": self.features, "history": self.history, "step": self.steps}

    def _infos(self) -> dict[str, Any]:
        infos: dict[str, Any] = {"doc_index": self.docs.copy()}
        if self.valid is not None:
            infos["action_mask"] = self.action_masks()
        return infos
