"""`LabelChainEnv`: multi-label classification of one document as a sequential decision problem."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.error import ResetNeeded

from labelchain.envs.chain_task import ChainTask, make_task
from labelchain.envs.data.dataset import Dataset
from labelchain.envs.actions import integer_action
from labelchain.envs.mcg import MCGSpec, emitted_mask
from labelchain.envs.rewards import DEFAULT_REWARD_MODE, chain_quality
from labelchain.envs.shortlist import allowed_actions

DOC_ORDERS = ("random", "sequential")


class LabelChainEnv(gym.Env):
    """Emit a document's labels one at a time, then STOP.

    ## Description
    Multi-label classification as a sequential decision problem: an episode is one document of the
    chosen split (drawn at random with the env's seed, in order with ``doc_order="sequential"``, or
    chosen by ``reset(options={"doc_index": i})``); each step emits one label or STOP, and the
    reward is the quality of the emitted set against the document's gold labels.

    ## Action Space
    ``Discrete(L + 1)``: actions ``0 .. L-1`` emit that label, action ``L`` is STOP. A label already
    emitted is masked: ``action_masks()`` (sb3-contrib's contract) and ``info["action_mask"]`` give
    the valid actions (an array of L + 1 built on request; ``dense_masks=False`` leaves it out of
    ``info``, so a step costs O(cap), not O(L), at large L). Taking a masked action anyway is a
    wasted step: nothing is emitted, the step counter advances, and the delta reward is 0. With a
    shortlist (``shortlist=``, an (n_docs, L) bool matrix, `envs.shortlist`), a label outside the
    document's shortlist is masked too and taking it is the same wasted step as a repeat: the mask
    is `envs.shortlist.allowed_actions` (not emitted AND shortlisted; STOP always). An action
    outside ``0 .. L``, or not a whole number (``1.5``, ``nan``), is a ``ValueError`` (``1.0`` and numpy
    integer types are fine; `envs.actions`).

    ## Observation Space
    A ``Dict``:
    - ``features``: the document's feature row, float32, shape ``(d,)`` (dense even for sparse data);
    - ``history``: the labels emitted so far, in order, padded to the step cap with ``L``, int64,
      shape ``(max_steps,)``;
    - ``step``: the number of steps taken.
    Every observation holds fresh arrays (nothing is shared with the env or with earlier steps).

    ## Rewards
    The quality of the emitted set P against the gold set G: ``reward="f1"`` (default,
    2|P∩G|/(|P|+|G|)), ``"jaccard"`` or ``"subset_accuracy"``; an empty P for an empty G scores 1.
    ``reward_mode="delta"`` (default, ``envs.rewards.DEFAULT_REWARD_MODE``) pays after every step the
    change in quality of the set so far (starting from 0); ``"terminal"`` pays the quality once, when
    the episode ends. Both give the same return.

    ## Starting State
    No label emitted, step 0, all actions valid; ``info`` holds ``doc_index`` and ``action_mask``
    (not with ``dense_masks=False``).

    ## Episode End
    Terminated on STOP. Truncated when the step cap (``max_steps``, default a little above the largest
    training label set: ``envs.chain_task.default_max_steps``) is reached without STOP; the finished
    chain is still scored. Stepping before the first ``reset()`` or after the episode ended raises
    ``gymnasium.error.ResetNeeded``, as ``gym.make``'s order-enforcing wrapper does before a reset.

    ## Arguments
    ``dataset`` (a name, a folder, a ``Dataset`` or a ready ``ChainTask``), ``split`` (``"train"`` or
    ``"test"``), ``reward``, ``reward_mode``, ``max_steps``, ``doc_order`` (``"random"`` or
    ``"sequential"``), ``data_dir``, ``dense_masks``, ``mcg`` (an `envs.mcg.MCGSpec`: MCG's cluster
    tokens become actions L..L+C-1 under its constraint, a disallowed action is a wasted step, and the
    reward counts labels only), ``shortlist`` (rows = the split's documents; not with ``mcg``).
    ``gym.make("LabelChain-v0", dataset="bibtex", ...)`` passes them on;
    ``gym.make_vec(..., vectorization_mode="vector_entry_point")`` builds `LabelChainVectorEnv`.

    ## Version History
    * v0: initial version. Later in v0: the default ``reward_mode`` became ``"delta"`` (the learners'
      and scripts' default; it was ``"terminal"``), and stepping an ended episode became an error
      (it used to go on appending labels, or paying the final reward again after truncation).
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        dataset: str | Path | Dataset | ChainTask = "emotions",
        split: str = "train",
        *,
        reward: str = "f1",
        reward_mode: str = DEFAULT_REWARD_MODE,
        max_steps: int | None = None,
        doc_order: str = "random",
        data_dir: str | Path | None = None,
        dense_masks: bool = True,
        mcg: MCGSpec | None = None,
        shortlist: Any = None,
    ) -> None:
        if doc_order not in DOC_ORDERS:
            raise ValueError(f"doc_order must be one of {DOC_ORDERS}, got {doc_order!r}")
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
        self.doc_order, self.dense_masks = doc_order, dense_masks
        self.observation_space = self.task.observation_space()
        self.action_space = self.task.action_space()
        self._cursor = 0
        self.doc = -1
        self._emitted: set[int] = set()
        self._history: list[int] = []
        self._mask: np.ndarray | None = None  # kept up to date only with dense_masks (L + 1 bytes)
        self._needs_reset = True  # before the first reset and after an episode ended

    def action_masks(self) -> np.ndarray:
        """Valid actions: labels not yet emitted (and shortlisted, with a shortlist), and STOP (always
        valid); a fresh array, O(L)."""
        if self._mask is not None:
            return self._mask.copy()
        return self._build_mask()

    def _build_mask(self) -> np.ndarray:
        """The valid actions from the history, O(L) (MCG: `envs.mcg.MCGSpec.allowed_actions`; a
        shortlist: `envs.shortlist.allowed_actions`)."""
        if self.task.mcg is not None:
            history = np.array([self._history], dtype=np.int64).reshape(1, -1)
            return self.task.mcg.allowed_actions(emitted_mask(history, self.task.n_labels))[0]
        if self.task.shortlist is not None:
            history = np.array([self._history], dtype=np.int64).reshape(1, -1)
            return allowed_actions(
                emitted_mask(history, self.task.n_labels), self.task.shortlist_rows(np.array([self.doc]))
            )[0]
        masks = np.ones(self.task.n_labels + 1, dtype=bool)
        masks[self._history] = False
        return masks

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        super().reset(seed=seed)
        options = options or {}
        if "doc_index" in options:
            self.doc = int(options["doc_index"])
            if not 0 <= self.doc < self.task.n_docs:
                raise ValueError(f"options['doc_index']={self.doc} is outside 0..{self.task.n_docs - 1}")
        elif self.doc_order == "sequential":
            self.doc, self._cursor = self._cursor, (self._cursor + 1) % self.task.n_docs
        else:
            self.doc = int(self.np_random.integers(self.task.n_docs))
        task = self.task
        lo, hi = task.gold_indptr[self.doc], task.gold_indptr[self.doc + 1]
        self._gold = set(task.split.Y.indices[lo:hi].tolist())
        self._features = task.features(np.array([self.doc]))[0]
        self._emitted = set()
        self._history = []
        self._mask = self._build_mask() if self.dense_masks else None
        self._steps = 0
        self._tp = 0
        self._n_scored = 0
        self._quality = 0.0
        self._needs_reset = False
        return self._observation(), self._info()

    def step(self, action: int) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        task, action = self.task, integer_action(action)  # 1.5 is refused, never truncated
        if self._needs_reset:
            raise ResetNeeded(
                "LabelChainEnv.step() needs reset() first: before the first episode and after "
                "one terminated or was truncated"
            )
        if not 0 <= action <= task.n_labels:
            raise ValueError(f"action {action} is outside 0..{task.n_labels} (L labels + STOP)")
        self._steps += 1
        terminated = action == task.stop_action
        if task.mcg is not None:
            allowed = bool(self.action_masks()[action])
        else:  # a label outside the shortlist is refused exactly as a repeat is
            allowed = action not in self._emitted and (
                task.shortlist is None
                or terminated
                or bool(task.in_shortlist(np.array([self.doc]), np.array([action]))[0])
            )
        if not terminated and allowed:
            self._emitted.add(action)
            self._history.append(action)
            scored = action < task.scored_labels
            self._n_scored += scored
            self._tp += scored and action in self._gold
            if self._mask is not None and task.mcg is not None:
                self._mask = self._build_mask()
            elif self._mask is not None:
                self._mask[action] = False
        n_gold = int(task.scored_gold_count[self.doc])
        quality = float(chain_quality(self._tp, self._n_scored, n_gold, task.reward))
        truncated = not terminated and self._steps >= task.max_steps
        if task.reward_mode == "delta":
            reward, self._quality = quality - self._quality, quality
        else:
            reward = quality if (terminated or truncated) else 0.0
        self._needs_reset = terminated or truncated
        return self._observation(), float(reward), terminated, truncated, self._info()

    def _observation(self) -> dict[str, Any]:
        history = np.full(self.task.max_steps, self.task.n_labels, dtype=np.int64)
        history[: len(self._history)] = self._history
        return {"features": self._features.copy(), "history": history, "step": self._steps}

    def _info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"doc_index": self.doc}
        if self.dense_masks:
            info["action_mask"] = self.action_masks()
        return info
