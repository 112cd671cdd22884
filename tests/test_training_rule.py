"""One early-stopping rule for both training loops: stop once `patience` validations in a row
improved nothing (`agents.training.out_of_patience`); train_epochs used to wait patience + 1 epochs."""

import torch

from labelchain.agents.policy_config import PolicyConfig
from labelchain.agents.policy_factory import build_policy
from labelchain.agents.config import Config
from labelchain.agents.training import out_of_patience, train_epochs


def test_the_rule_on_hand_made_counts():
    assert [out_of_patience(n, 2) for n in range(4)] == [False, False, True, True]
    assert not out_of_patience(1000, None)


def test_train_epochs_stops_after_patience_epochs_without_improvement(tiny_dataset):
    """A rate too small to change a greedy decode: only the first epoch 'improves' (from nothing), so
    patience 2 trains epochs 0, 1, 2 and stops; 10 epochs were allowed."""
    torch.manual_seed(0)
    policy = build_policy(PolicyConfig(hidden_size=8), tiny_dataset.train)
    config = Config.of(epochs=10, batch_size=4, lr=1e-12, patience=2, seed=0)
    history = train_epochs(policy, tiny_dataset.train, config, val=tiny_dataset.test, progress=False)
    assert [record["epoch"] for record in history.epochs] == [0, 1, 2]
    assert history.best_epoch == 0
