"""Named model and training sizes for the chain learners: one place for each preset's numbers.

`paper` follows the published setup where this CPU-first project can (published: label embeddings
512, hidden 2048, layer normalisation, variational dropout, Adam, 200 epochs on delicious): a
1024-unit GRU over 256-dimensional label embeddings, dropout on the document encoding and the GRU
outputs (0.3) and variational dropout on the GRU inputs (0.2), AdamW with weight decay 1e-4, up to
50 epochs with early stopping (patience 5 epochs on validation), two checkpoints (best example F1
for set metrics, best nDCG@5 for ranking metrics; train_rl: up to 20,000 updates, validation every
100, patience 5 validations). `small` is the comparison grid's size, for quick runs and tests.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from labelchain.agents.config import DEFAULTS as D
from labelchain.agents.policy_config import PolicyConfig


@dataclass(frozen=True)
class Preset:
    hidden_size: int
    label_embed_size: int
    dropout: float
    input_dropout: float
    aux_weight: float
    weight_decay: float
    lr: float
    rl_lr: float
    epochs: int
    combined_epochs: int
    patience: int
    batch_size: int = D.learner.batch_size
    updates: int = D.run.updates  # train_rl counts updates, not epochs: the cap; patience (in validations) stops sooner
    eval_every: int = D.run.eval_every

    def to_dict(self) -> dict:
        return asdict(self)

    def policy_config(self, **changes: Any) -> PolicyConfig:
        """The preset's architecture (for `agents.policy_factory.build_policy`), with `changes`."""
        return PolicyConfig(
            hidden_size=self.hidden_size,
            label_embed_size=self.label_embed_size,
            dropout=self.dropout,
            input_dropout=self.input_dropout,
            aux_weight=self.aux_weight,
        ).replace(**changes)


PRESETS = {
    "paper": Preset(
        hidden_size=1024,
        label_embed_size=256,
        dropout=0.3,
        input_dropout=0.2,
        aux_weight=0.1,
        weight_decay=1e-4,
        lr=1e-3,
        rl_lr=3e-4,
        epochs=50,
        combined_epochs=10,
        patience=5,
        updates=20000,
        eval_every=100,
    ),
    "small": Preset(
        hidden_size=128,
        label_embed_size=64,
        dropout=0.1,
        input_dropout=0.0,
        aux_weight=0.1,
        weight_decay=0.0,
        lr=1e-3,
        rl_lr=3e-4,
        epochs=5,
        combined_epochs=2,
        patience=2,
        updates=500,
        eval_every=50,
    ),
}
