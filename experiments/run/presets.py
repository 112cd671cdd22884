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

from typing import Any

from labelchain.agents.config import Config

# A preset is a named `Config` (agents.config): the architecture in its policy section, the rates
# and batch in its learner section, the budgets (train_rl's `updates` and `eval_every`, the epoch
# loops' `epochs` and `combined_epochs`) and `patience` in its run section.
PRESETS: dict[str, Config] = {
    "paper": Config.of(
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
    "small": Config.of(
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

# The fields a preset sets, in the order strength.json has always recorded them (`preset_record`).
RECORDED = (
    "hidden_size",
    "label_embed_size",
    "dropout",
    "input_dropout",
    "aux_weight",
    "weight_decay",
    "lr",
    "rl_lr",
    "epochs",
    "combined_epochs",
    "patience",
    "batch_size",
    "updates",
    "eval_every",
)


def preset_record(config: Config) -> dict[str, Any]:
    """A preset's fields as the flat dict strength.json records for each cell and row ("preset",
    "resolved": the shape of the former `Preset` class). Kept because a finished cell is reused only
    when this record equals the saved one: committed cells stay reusable and the files re-render."""
    values = config.flat()
    return {name: values[name] for name in RECORDED}
