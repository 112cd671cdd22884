"""The shared RNN chain policy: every learner (teacher forcing, rearrangement, REINFORCE, PPO, SB3)
trains these same weights, so a checkpoint from one can warm-start another.

A document is encoded once (sparse-friendly linear -> LayerNorm -> ReLU); a GRU then steps over the
labels emitted so far (input: embedding of the previous label, START first, concatenated with the
document encoding) and emits logits over the L labels + STOP (id L) and a scalar value.

Three faces of the same weights, giving the same numbers (tests hold them to it):
  * incremental  `initial_state(X)` + `step(state, last_label)` for batched rollouts;
  * memoryless   `prefix_logits(X, history)` for frameworks that see (features, history) only;
  * teacher-forced `sequence_logits(X, targets)` for all positions of a known sequence at once.
Label id conventions: 0..L-1 labels, L = STOP, -1 = "no label" (START as an input, padding in a
history or target matrix).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from labelchain.agents.features import (
    DocFeatures,
    doc_features,
    input_normalization,
    sparse_linear,
)
from labelchain.agents.chain_step import DocPrior, FlatEmitted, HistoryEmitted
from labelchain.agents.guidance import ClusterGuidance, split_guidance_columns
from labelchain.agents.mcg import MCGConstraint
from labelchain.agents.output_layers import make_output_layer
from labelchain.agents.prior_columns import FLOOR, split_prior_columns
from labelchain.agents.torch_files import load_torch_file, save_torch_file
from labelchain.agents.policy_config import PolicyConfig
from labelchain.envs.atomic import atomic_write

PRIOR_GAIN = 30.0  # a = PRIOR_GAIN * prior_scale, b = PRIOR_GAIN * prior_offset (`prior_weights`)
START = -1  # `last_label` value meaning "nothing emitted yet"; also the padding id of sequences
CONFIG_FILE = "policy_config.json"
WEIGHTS_FILE = "policy_weights.pt"


@dataclass
class ChainState:
    """Recurrent state of a batch of chains: GRU hidden (B, H), the fixed document encoding (B, D) and,
    for a prior policy, the documents' prior offsets and shortlist (fixed too)."""

    hidden: torch.Tensor
    doc: torch.Tensor
    prior: DocPrior | None = None

    def select(self, rows: torch.Tensor) -> ChainState:
        """Rows `rows` of the batch (beam search reorders and repeats chains)."""
        return ChainState(self.hidden[rows], self.doc[rows], None if self.prior is None else self.prior.select(rows))


class ChainPolicy(nn.Module):
    """GRU label-chain policy with a value head; see the module docstring for the three faces."""

    def __init__(self, n_features: int, n_labels: int, **options: Any) -> None:
        """The policy of `PolicyConfig(n_features, n_labels, **options)` (agents.policy_config lists the
        options); scripts build through `agents.policy_factory.build_policy`."""
        super().__init__()
        if n_features < 1 or n_labels < 1:
            raise ValueError(f"need n_features >= 1 and n_labels >= 1, got {n_features}, {n_labels}")
        self.policy_config = config = PolicyConfig(n_features, n_labels, **options)
        hidden_size, doc_size = config.hidden_size, config.resolved_doc_size
        label_embed_size, dropout, aux_weight = config.label_embed_size, config.dropout, config.aux_weight
        sparse_label_grads, output = config.sparse_label_grads, config.output
        self.n_features = n_features
        self.n_labels = n_labels
        self.stop_id = n_labels
        bound = 1.0 / np.sqrt(n_features)
        self.input_weight = nn.Parameter(torch.empty(n_features, doc_size).uniform_(-bound, bound))
        self.input_bias = nn.Parameter(torch.zeros(doc_size))
        self.register_buffer("input_shift", torch.zeros(n_features))
        self.register_buffer("input_scale", torch.ones(n_features))
        self.doc_norm = nn.LayerNorm(doc_size)
        self.dropout = nn.Dropout(dropout)
        # row n_labels = START; sparse gradients at large L (agents.optim explains why)
        self.label_embedding = nn.Embedding(n_labels + 1, label_embed_size, sparse=sparse_label_grads)
        self.init_hidden = nn.Linear(doc_size, hidden_size)
        self.gru = nn.GRU(label_embed_size + doc_size, hidden_size, batch_first=True)
        # Created where the flat policy_head always was, so a flat policy draws the same initial weights.
        self.output = make_output_layer(
            output,
            hidden_size + doc_size,
            n_labels,
            config.tree,
            config.tree_beam,
            sparse_label_grads,
            config.tree_query_size,
        )
        self.value_head = nn.Linear(hidden_size + doc_size, 1)
        # Auxiliary multi-label head on the document encoding (aux_weight > 0): trained jointly with
        # binary cross-entropy (agents.supervised), it gives per-label scores for ranking.
        if aux_weight < 0:
            raise ValueError(f"aux_weight must be >= 0, got {aux_weight}")
        self.aux_weight = float(aux_weight)
        self.label_head = nn.Linear(doc_size, n_labels) if aux_weight > 0 else None
        # Variational dropout on the GRU inputs: one mask per sequence, shared by all its steps.
        self.input_dropout = float(config.input_dropout)
        # BCL cluster guidance (agents.guidance), created last so unguided policies draw the same weights.
        self.guidance: ClusterGuidance | None = None
        if config.n_clusters:
            self.guidance = ClusterGuidance(
                doc_size, config.n_clusters, config.guidance_weight, config.guidance_anneal, config.guidance_mix
            )
        # MCG (agents.mcg): actions L..L+C-1 are cluster tokens, constrained in the flat output layer.
        self.mcg = config.mcg
        if self.mcg is not None:
            if output != "flat" or self.mcg.n_actions != n_labels:
                raise ValueError(
                    f"mcg needs output='flat' and n_labels = {self.mcg.n_labels} labels + {self.mcg.n_clusters} "
                    f"clusters = {self.mcg.n_actions}; got output={output!r}, n_labels={n_labels}"
                )
            self.output.constraint = MCGConstraint(self.mcg)
        # A peer's prior (agents.prior_columns): logits + a * prior + b, a and b learned; created last so
        # policies without one draw the same initial weights. a = 1, b = 0: the chain starts at the peer.
        self.prior_mode, self.shortlist = config.prior, config.shortlist
        self.label_history = config.label_history
        self.stop_offset = 0.0  # added to STOP's prior offset: the set rule tuned on validation (agents.chain_rules)
        if config.prior != "none":
            width = n_labels if config.prior == "per_label" else 1
            self.prior_scale = nn.Parameter(torch.full((width,), 1.0 / PRIOR_GAIN))
            self.prior_offset = nn.Parameter(torch.zeros(width))
        self._register_load_state_dict_pre_hook(_rename_old_policy_head)

    @property
    def config(self) -> dict[str, Any]:
        """The saved form of `policy_config` (`PolicyConfig.to_dict`): policy_config.json, checkpoints."""
        return self.policy_config.to_dict()

    def sparse_parameters(self) -> list[nn.Parameter]:
        """Label-indexed tables that get sparse gradients (empty unless sparse_label_grads)."""
        if not self.label_embedding.sparse:
            return []
        return [self.label_embedding.weight, *self.output.sparse_parameters()]

    @property
    def policy_head(self) -> nn.Linear:
        """The flat layer's Linear (weights saved before the output layer became pluggable)."""
        if self.output.kind != "flat":
            raise AttributeError("policy_head exists only for output='flat'")
        return self.output.linear

    @property
    def label_columns(self) -> int:
        """The label columns predictions have: n_labels, or L for MCG (its cluster tokens follow them)."""
        return self.n_labels if self.mcg is None else self.mcg.n_labels

    @property
    def feature_widths(self) -> tuple[int, ...]:
        """Accepted feature-row widths: the text features, for a guided policy also text + gold clusters,
        for a prior policy text + one prior column per label only."""
        if self.prior_mode != "none":
            return (self.n_features + self.n_labels,)
        if self.guidance is None:
            return (self.n_features,)
        return (self.n_features, self.n_features + self.guidance.n_clusters)

    # ------------------------------------------------------------------ encoding
    def fit_input_normalization(self, X) -> ChainPolicy:
        """Store per-feature (shift, scale) from training features (see features.input_normalization)."""
        shift, scale = input_normalization(self._split_guidance(X)[0])
        self.input_shift.copy_(torch.from_numpy(shift))
        self.input_scale.copy_(torch.from_numpy(scale))
        return self

    def encode(self, X) -> torch.Tensor:
        """Document encoding (B, D); X is anything `doc_features` accepts.

        A guided policy conditions it on the gold clusters carried as extra columns of X (training),
        else on the clusters its own head predicts (agents.guidance).
        """
        text, gold = self._split_guidance(X)
        doc = self._encode_text(text)
        if self.guidance is None:
            return doc
        clusters = (
            self.guidance.predict(doc) if gold is None else self.guidance.training_clusters(doc, gold.to(doc.device))
        )
        return self.guidance.condition(doc, clusters)

    def guidance_loss(self, X, epoch: int = 1) -> torch.Tensor:
        """BCL's weighted cluster BCE on rows of X that carry gold clusters (see agents.guidance)."""
        if self.guidance is None:
            raise ValueError("guidance_loss needs a policy built with n_clusters > 0")
        text, gold = self._split_guidance(X)
        if gold is None:
            raise ValueError("guidance_loss needs feature rows with the gold cluster columns (with_gold_clusters)")
        doc = self._encode_text(text)
        return self.guidance.loss_weight(epoch) * self.guidance.loss(doc, gold.to(doc.device))

    def predicted_clusters(self, X) -> np.ndarray:
        """(B, C) bool clusters the guidance head predicts for feature rows X (no gradients)."""
        if self.guidance is None:
            raise ValueError("predicted_clusters needs a policy built with n_clusters > 0")
        with torch.no_grad():
            return self.guidance.predict(self._encode_text(self._split_guidance(X)[0])).bool().cpu().numpy()

    def _split_guidance(self, X):
        """(text features, gold clusters or None): only a guided policy reads cluster columns; a prior
        policy's prior columns are cut off here (`document_prior` reads them)."""
        if self.prior_mode != "none":
            if isinstance(X, DocFeatures):
                raise ValueError("a prior policy reads raw feature rows (text + prior columns), not DocFeatures")
            return split_prior_columns(X, self.n_features, self.n_labels)[0], None
        if self.guidance is None or isinstance(X, DocFeatures):
            return X, None
        return split_guidance_columns(X, self.n_features, self.guidance.n_clusters)

    def _encode_text(self, X) -> torch.Tensor:
        features = doc_features(X, device=self.input_weight.device)
        if features.n_features != self.n_features:
            raise ValueError(f"policy expects {self.n_features} features, got {features.n_features}")
        # ((x - shift) * scale) @ W written so that sparse inputs stay sparse.
        offset = (self.input_shift * self.input_scale) @ self.input_weight
        raw = sparse_linear(features, self.input_weight, self.input_scale) - offset + self.input_bias
        return self.dropout(torch.relu(self.doc_norm(raw)))

    def document_prior(self, X) -> DocPrior | None:
        """The prior's offsets a * prior + b (B, L + 1; STOP `stop_offset`, 0 unless a set rule moved it)
        and shortlist of feature rows X; for a flat policy without a prior only a nonzero STOP offset,
        else None. Labels the prior does not store sit at FLOOR (agents.prior_columns)."""
        if self.prior_mode == "none":
            if self.stop_offset == 0 or self.output.kind != "flat":
                return None
            rows = X.n_rows if isinstance(X, DocFeatures) else int(X.shape[0])
            bias = torch.zeros(rows, self.n_labels + 1, device=self.input_weight.device)
            bias[:, self.stop_id] = float(self.stop_offset)
            return DocPrior(bias)  # a flat policy without a prior: only the STOP offset
        if isinstance(X, DocFeatures):
            raise ValueError("a prior policy reads raw feature rows (text + prior columns), not DocFeatures")
        columns = torch.as_tensor(split_prior_columns(X, self.n_features, self.n_labels)[1])
        columns = columns.to(device=self.input_weight.device, dtype=torch.float32)
        if columns.dim() == 1:
            columns = columns[None]
        scale, offset = self.prior_weights()
        label_bias = scale * (FLOOR + columns) + offset
        bias = torch.cat([label_bias, label_bias.new_full((columns.shape[0], 1), float(self.stop_offset))], dim=1)
        if not self.shortlist:
            return DocPrior(bias)
        blocked = torch.cat([columns <= 0, torch.zeros_like(columns[:, :1], dtype=torch.bool)], dim=1)
        return DocPrior(bias, blocked)

    def prior_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(a, b) of logits + a * prior + b, stored divided by PRIOR_GAIN: Adam moves a parameter by
        about the learning rate per update whatever its gradient, and a must travel from 1 to where
        the data puts it (scene, OvR prior: a fell from 1 to 0.84 in 200 updates, still falling, with
        a chain 9 P@1 points below the same chain without the prior); the gain gives a and b a
        PRIOR_GAIN times larger step without a second learning rate."""
        return self.prior_scale * PRIOR_GAIN, self.prior_offset * PRIOR_GAIN

    def new_emitted(self, state: ChainState) -> FlatEmitted | HistoryEmitted:
        """The output layer's tracker of what each chain may no longer emit, with the prior's offsets and
        the labels outside its shortlist blocked from the start (decoders and the RL collector)."""
        emitted = self.output.new_emitted(state.doc.shape[0], state.doc.device)
        if state.prior is None:
            return emitted
        mask = emitted.mask if state.prior.blocked is None else state.prior.blocked.clone()
        return FlatEmitted(mask, state.prior.bias)

    @staticmethod
    def _with_prior(logits: torch.Tensor, prior: DocPrior | None) -> torch.Tensor:
        """Dense logits (B, A) or (B, T, A) plus the prior's offsets; labels outside the shortlist -inf."""
        if prior is None:
            return logits
        bias = prior.bias if logits.dim() == 2 else prior.bias[:, None, :]
        logits = logits + bias
        if prior.blocked is None:
            return logits
        blocked = prior.blocked if logits.dim() == 2 else prior.blocked[:, None, :]
        return logits.masked_fill(blocked, float("-inf"))

    def _input_ids(self, labels: torch.Tensor) -> torch.Tensor:
        """Map previous-label ids to embedding rows: START/padding (-1) and STOP both use row L (and
        every label does without `label_history`: the chain never sees what it emitted)."""
        labels = labels.to(self.input_weight.device).long()
        if not self.label_history:
            return torch.full_like(labels, self.n_labels)
        return torch.where((labels < 0) | (labels >= self.n_labels), self.n_labels, labels)

    def _rnn_inputs(self, doc: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """(B, T) previous labels -> (B, T, E + D) GRU inputs."""
        embedded = self.label_embedding(self._input_ids(previous))
        inputs = torch.cat([embedded, doc[:, None, :].expand(-1, previous.shape[1], -1)], dim=-1)
        if self.training and self.input_dropout > 0:  # (the step face draws a fresh mask per step)
            keep = inputs.new_ones(inputs.shape[0], 1, inputs.shape[2])
            inputs = inputs * nn.functional.dropout(keep, self.input_dropout, training=True)
        return inputs

    def joint_inputs(self, hidden: torch.Tensor, doc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """What the output layer reads from GRU outputs and document encodings, (..., H + D), and the value."""
        if hidden.dim() == 3:
            doc = doc[:, None, :].expand(-1, hidden.shape[1], -1)
        joint = torch.cat([self.dropout(hidden), doc], dim=-1)
        return joint, self.value_head(joint).squeeze(-1)

    def aux_logits(self, X) -> torch.Tensor:
        """Logits (B, L) of the auxiliary multi-label head; an error if the policy has none."""
        if self.label_head is None:
            raise ValueError("this ChainPolicy has no auxiliary label head (built with aux_weight=0)")
        return self.label_head(self.encode(X))

    # ------------------------------------------------------------------ incremental face
    def initial_state(self, X) -> ChainState:
        """State before any step; feed `START` (-1) as the first `last_label`."""
        doc = self.encode(X)
        return ChainState(torch.tanh(self.init_hidden(doc)), doc, self.document_prior(X))

    def step_joint(self, state: ChainState, last_label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, ChainState]:
        """Consume `last_label` (B,) -> output-layer input (B, H+D), value (B), new state."""
        inputs = self._rnn_inputs(state.doc, last_label.reshape(-1, 1))
        _, hidden = self.gru(inputs, state.hidden[None].contiguous())
        hidden = hidden[0]
        joint, value = self.joint_inputs(hidden, state.doc)
        return joint, value, ChainState(hidden, state.doc, state.prior)

    def step(self, state: ChainState, last_label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, ChainState]:
        """Consume `last_label` (B,) -> logits (B, L+1) and value (B) for the next action, new state."""
        joint, value, state = self.step_joint(state, last_label)
        return self._with_prior(self.output.logits(joint), state.prior), value, state

    # ------------------------------------------------------------------ sequence faces
    def _run_sequence(
        self, X, previous: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        outputs, doc = self.sequence_hidden(X, previous, lengths)
        return self.joint_inputs(outputs, doc)

    def sequence_hidden(
        self, X, previous: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """GRU outputs (B, T, H) over `previous` inputs and the document encodings (B, D).

        With `lengths` (B,), rows run only over their first lengths[b] inputs (a packed sequence:
        padding costs no GRU work, which is most of a batch when label-set sizes vary); outputs past
        a row's length are 0 and must not be used.
        """
        state = self.initial_state(X)
        inputs, h0 = self._rnn_inputs(state.doc, previous), state.hidden[None].contiguous()
        if lengths is None or int(lengths.min()) >= previous.shape[1]:
            return self.gru(inputs, h0)[0], state.doc
        packed = nn.utils.rnn.pack_padded_sequence(
            inputs, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
        )
        outputs, _ = self.gru(packed, h0)
        padded = nn.utils.rnn.pad_packed_sequence(outputs, batch_first=True, total_length=previous.shape[1])[0]
        return padded, state.doc

    @staticmethod
    def previous_labels(targets: torch.Tensor) -> torch.Tensor:
        """Teacher-forcing inputs: START, then each target shifted right by one."""
        start = torch.full((targets.shape[0], 1), START, dtype=torch.long, device=targets.device)
        return torch.cat([start, targets[:, :-1]], dim=1)

    def sequence_joint(self, X, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing: output-layer inputs (B, T, H+D) and values (B, T); position t predicts
        targets[:, t]. The input at t is targets[:, t-1] (START at t=0); rows are -1 padded after their end.
        """
        targets = torch.as_tensor(targets, dtype=torch.long, device=self.input_weight.device)
        return self._run_sequence(X, self.previous_labels(targets), (targets >= 0).sum(dim=1))

    def sequence_logits(self, X, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing: logits (B, T, L+1) and values (B, T) (see `sequence_joint`)."""
        joint, values = self.sequence_joint(X, targets)
        return self._with_prior(self.output.logits(joint), self.document_prior(X)), values

    def prefix_logits(self, X, history: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Memoryless face: logits (B, L+1) and value (B) for the action after each row's history.

        `history` (B, T) holds emitted labels left-aligned and padded with -1 (T may be 0).
        """
        history = torch.as_tensor(history, dtype=torch.long, device=self.input_weight.device)
        if history.dim() != 2:
            raise ValueError(f"history must be (batch, T), got shape {tuple(history.shape)}")
        present = history >= 0
        if present.shape[1] > 1 and bool((present[:, 1:] & ~present[:, :-1]).any()):
            raise ValueError("history must be left-aligned: -1 padding only after the emitted labels")
        lengths = present.sum(dim=1)
        width = int(lengths.max()) if history.shape[0] else 0
        start = torch.full((history.shape[0], 1), START, dtype=torch.long, device=history.device)
        joint, values = self._run_sequence(X, torch.cat([start, history[:, :width]], dim=1), lengths + 1)
        rows = torch.arange(history.shape[0], device=history.device)
        logits = self._with_prior(self.output.logits(joint[rows, lengths]), self.document_prior(X))
        return logits, values[rows, lengths]

    # ------------------------------------------------------------------ persistence
    @classmethod
    def from_config(cls, config: PolicyConfig | dict[str, Any]) -> ChainPolicy:
        """A fresh policy (new weights) of the architecture `config` describes (a `PolicyConfig`, or
        its saved dict `.config`, from any version).

        The one way to rebuild a policy from a saved config: `load`, checkpoints and scripts use it,
        so a new architecture key needs no change anywhere else.
        """
        if not isinstance(config, PolicyConfig):
            config = PolicyConfig.from_dict(config)
        options = {spec.name: getattr(config, spec.name) for spec in fields(PolicyConfig)}
        return cls(options.pop("n_features"), options.pop("n_labels"), **options)

    def save(self, directory: str | Path) -> None:
        """Write config + weights into `directory` atomically (temp file, then os.replace)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write(directory / CONFIG_FILE, lambda f: f.write(json.dumps(self.config, indent=2).encode()))
        save_torch_file(directory / WEIGHTS_FILE, self.state_dict())

    @classmethod
    def load(cls, directory: str | Path, map_location: str | torch.device = "cpu") -> ChainPolicy:
        """Rebuild a policy saved by `save`; the error names the missing or malformed file."""
        directory = Path(directory)
        config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
        for path in (config_path, weights_path):
            if not path.is_file():
                raise FileNotFoundError(
                    f"{path}: no saved ChainPolicy here (expected {CONFIG_FILE} and {WEIGHTS_FILE})"
                )
        try:
            policy = cls.from_config(json.loads(config_path.read_text()))
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"{config_path}: not a ChainPolicy config ({type(error).__name__}: {error})") from None
        weights = load_torch_file(weights_path, map_location=map_location)
        try:
            policy.load_state_dict(weights)
        except (RuntimeError, TypeError, AttributeError, KeyError) as error:
            detail = " ".join(str(error).split())[:300] or type(error).__name__
            raise ValueError(f"{weights_path}: weights do not fit {config_path} ({detail})") from None
        return policy


def _rename_old_policy_head(state_dict: dict, prefix: str, *args) -> None:
    """Weights saved before the output layer became pluggable call the flat layer `policy_head`."""
    for name in ("weight", "bias"):
        old = f"{prefix}policy_head.{name}"
        if old in state_dict:
            state_dict[f"{prefix}output.linear.{name}"] = state_dict.pop(old)
