"""The cheaper teacher-forcing pass (packed GRU, output layer at real positions only) gives the
numbers of the plain padded computation, with and without dropout's randomness removed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from labelchain.agents.policy import START as PAD
from labelchain.agents.policy import ChainPolicy
from labelchain.agents.supervised import teacher_forcing_loss
from labelchain.experiments.bench.bench_supervised import padded_loss


def test_packed_present_only_loss_matches_the_padded_computation() -> None:
    torch.manual_seed(0)
    policy = ChainPolicy(5, 6, hidden_size=16, label_embed_size=4).eval()
    X = np.random.default_rng(0).random((4, 5)).astype(np.float32)
    stop = policy.stop_id
    targets = torch.tensor(
        [[3, 1, 4, 0, stop], [0, stop, PAD, PAD, PAD], [stop, PAD, PAD, PAD, PAD], [5, 2, stop, PAD, PAD]]
    )
    fast = teacher_forcing_loss(policy, X, targets)
    slow = padded_loss(policy, X, targets)
    assert torch.allclose(fast, slow, atol=1e-6)
    fast.backward()
    fast_grads = [None if p.grad is None else p.grad.clone() for p in policy.parameters()]  # value head: none
    policy.zero_grad()
    slow.backward()
    for fast_grad, param in zip(fast_grads, policy.parameters()):
        assert (fast_grad is None) == (param.grad is None)
        assert fast_grad is None or torch.allclose(fast_grad, param.grad, atol=1e-6)


def test_input_dropout_is_one_mask_per_sequence() -> None:
    torch.manual_seed(0)
    policy = ChainPolicy(5, 6, hidden_size=8, label_embed_size=4, input_dropout=0.5).train()
    doc = torch.ones(3, 8)
    inputs = policy._rnn_inputs(doc, torch.tensor([[-1, 2, 3, 1], [-1, 0, 4, 5], [-1, 1, 1, 1]]))
    dropped = inputs[:, :, 4:] == 0  # the document part is all ones before dropout
    assert dropped.any() and (~dropped).any()
    assert (dropped == dropped[:, :1]).all()  # the same units dropped at every step of a sequence
    assert torch.allclose(inputs[:, :, 4:][~dropped], torch.tensor(2.0))  # kept units scaled by 1 / (1 - p)
    assert torch.equal(policy.eval()._rnn_inputs(doc[:1], torch.tensor([[-1, 2]]))[:, :, 4:], torch.ones(1, 2, 8))


@pytest.mark.needs_data
@pytest.mark.slow
def test_train_epochs_keeps_a_best_checkpoint_per_metric() -> None:
    from labelchain.agents.decoding import predict
    from labelchain.agents.config import Config
    from labelchain.agents.training import train_epochs
    from labelchain.envs.data.loading import load_dataset
    from labelchain.envs.metrics import evaluate

    ds = load_dataset("emotions")
    torch.manual_seed(0)
    policy = ChainPolicy(ds.n_features, ds.n_labels, hidden_size=16).fit_input_normalization(ds.train.X)
    config = Config.of(epochs=4, seed=0, select_metric="example_f1", extra_checkpoints=("nDCG@5",), weight_decay=0.01)
    history = train_epochs(policy, ds.train, config, learner="freq2rare", val=ds.test, progress=False)
    assert set(history.checkpoints) == {"example_f1", "nDCG@5"}
    for metric, (epoch, metrics, state) in history.checkpoints.items():
        assert metrics[metric] == max(record[f"val/{metric}"] for record in history.epochs)
        assert history.epochs[epoch][f"val/{metric}"] == metrics[metric]
        policy.load_state_dict(state)
        Y_pred, scores = predict(policy, ds.test.X)
        assert evaluate(ds.test.Y, scores=scores, Y_pred=Y_pred)[metric] == metrics[metric]
