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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from envs.atomic import atomic_write
from agents.features import doc_features, input_normalization, sparse_linear

START = -1  # `last_label` value meaning "nothing emitted yet"; also the padding id of sequences
CONFIG_FILE = "policy_config.json"
WEIGHTS_FILE = "policy_weights.pt"


@dataclass
class ChainState:
    """Recurrent state of a batch of chains: GRU hidden (B, H) and the fixed document encoding (B, D)."""

    hidden: torch.Tensor
    doc: torch.Tensor

    def select(self, rows: torch.Tensor) -> "ChainState":
        """Rows `rows` of the batch (beam search reorders and repeats chains)."""
        return ChainState(self.hidden[rows], self.doc[rows])


class ChainPolicy(nn.Module):
    """GRU label-chain policy with a value head; see the module docstring for the three faces."""

    def __init__(
        self,
        n_features: int,
        n_labels: int,
        *,
        hidden_size: int = 256,
        doc_size: int | None = None,
        label_embed_size: int = 64,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if n_features < 1 or n_labels < 1:
            raise ValueError(f"need n_features >= 1 and n_labels >= 1, got {n_features}, {n_labels}")
        doc_size = hidden_size if doc_size is None else doc_size
        self.config = {
            "n_features": int(n_features),
            "n_labels": int(n_labels),
            "hidden_size": int(hidden_size),
            "doc_size": int(doc_size),
            "label_embed_size": int(label_embed_size),
            "dropout": float(dropout),
        }
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
        self.label_embedding = nn.Embedding(n_labels + 1, label_embed_size)  # row n_labels = START
        self.init_hidden = nn.Linear(doc_size, hidden_size)
        self.gru = nn.GRU(label_embed_size + doc_size, hidden_size, batch_first=True)
        self.policy_head = nn.Linear(hidden_size + doc_size, n_labels + 1)
        self.value_head = nn.Linear(hidden_size + doc_size, 1)

    # ------------------------------------------------------------------ encoding
    def fit_input_normalization(self, X) -> "ChainPolicy":
        """Store per-feature (shift, scale) from training features (see features.input_normalization)."""
        shift, scale = input_normalization(X)
        self.input_shift.copy_(torch.from_numpy(shift))
        self.input_scale.copy_(torch.from_numpy(scale))
        return self

    def encode(self, X) -> torch.Tensor:
        """Document encoding (B, D); X is anything `doc_features` accepts."""
        features = doc_features(X, device=self.input_weight.device)
        if features.n_features != self.n_features:
            raise ValueError(f"policy expects {self.n_features} features, got {features.n_features}")
        # ((x - shift) * scale) @ W written so that sparse inputs stay sparse.
        offset = (self.input_shift * self.input_scale) @ self.input_weight
        raw = sparse_linear(features, self.input_weight, self.input_scale) - offset + self.input_bias
        return self.dropout(torch.relu(self.doc_norm(raw)))

    def _input_ids(self, labels: torch.Tensor) -> torch.Tensor:
        """Map previous-label ids to embedding rows: START/padding (-1) and STOP both use row L."""
        labels = labels.to(self.input_weight.device).long()
        return torch.where((labels < 0) | (labels >= self.n_labels), self.n_labels, labels)

    def _rnn_inputs(self, doc: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """(B, T) previous labels -> (B, T, E + D) GRU inputs."""
        embedded = self.label_embedding(self._input_ids(previous))
        return torch.cat([embedded, doc[:, None, :].expand(-1, previous.shape[1], -1)], dim=-1)

    def _heads(self, hidden: torch.Tensor, doc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if hidden.dim() == 3:
            doc = doc[:, None, :].expand(-1, hidden.shape[1], -1)
        joint = torch.cat([self.dropout(hidden), doc], dim=-1)
        return self.policy_head(joint), self.value_head(joint).squeeze(-1)

    # ------------------------------------------------------------------ incremental face
    def initial_state(self, X) -> ChainState:
        """State before any step; feed `START` (-1) as the first `last_label`."""
        doc = self.encode(X)
        return ChainState(torch.tanh(self.init_hidden(doc)), doc)

    def step(
        self, state: ChainState, last_label: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, ChainState]:
        """Consume `last_label` (B,) -> logits (B, L+1) and value (B) for the next action, new state."""
        inputs = self._rnn_inputs(state.doc, last_label.reshape(-1, 1))
        _, hidden = self.gru(inputs, state.hidden[None].contiguous())
        hidden = hidden[0]
        logits, value = self._heads(hidden, state.doc)
        return logits, value, ChainState(hidden, state.doc)

    # ------------------------------------------------------------------ sequence faces
    def _run_sequence(self, X, previous: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        state = self.initial_state(X)
        outputs, _ = self.gru(self._rnn_inputs(state.doc, previous), state.hidden[None].contiguous())
        return self._heads(outputs, state.doc)

    def sequence_logits(self, X, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing: logits (B, T, L+1) and values (B, T); position t predicts targets[:, t].

        The input at t is targets[:, t-1] (START at t=0); rows are padded with -1 after their end.
        """
        targets = torch.as_tensor(targets, dtype=torch.long, device=self.input_weight.device)
        start = torch.full((targets.shape[0], 1), START, dtype=torch.long, device=targets.device)
        previous = torch.cat([start, targets[:, :-1]], dim=1)
        return self._run_sequence(X, previous)

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
        logits, values = self._run_sequence(X, torch.cat([start, history[:, :width]], dim=1))
        rows = torch.arange(history.shape[0], device=history.device)
        return logits[rows, lengths], values[rows, lengths]

    # ------------------------------------------------------------------ persistence
    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "ChainPolicy":
        """A fresh policy (new weights) of the architecture `config` describes (a `.config` dict).

        The one way to rebuild a policy from a saved config: `load`, checkpoints and scripts use it,
        so a new architecture key needs no change anywhere else.
        """
        options = dict(config)
        return cls(options.pop("n_features"), options.pop("n_labels"), **options)

    def save(self, directory: str | Path) -> None:
        """Write config + weights into `directory` atomically (temp file, then os.replace)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write(directory / CONFIG_FILE, lambda f: f.write(json.dumps(self.config, indent=2).encode()))
        atomic_write(directory / WEIGHTS_FILE, lambda f: torch.save(self.state_dict(), f))

    @classmethod
    def load(cls, directory: str | Path, map_location: str | torch.device = "cpu") -> "ChainPolicy":
        """Rebuild a policy saved by `save`; the error names the missing or malformed file."""
        directory = Path(directory)
        config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
        for path in (config_path, weights_path):
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no saved ChainPolicy here (expected {CONFIG_FILE} and {WEIGHTS_FILE})")
        try:
            policy = cls.from_config(json.loads(config_path.read_text()))
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"{config_path}: not a ChainPolicy config ({type(error).__name__}: {error})") from None
        policy.load_state_dict(torch.load(weights_path, map_location=map_location, weights_only=True))
        return policy

