"""Rearranged targets (exact), the teacher-forcing loss, seeded training, and learning on emotions."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from labelchain.agents.decoding import predict
from labelchain.agents.policy import ChainPolicy
from labelchain.agents.rearrangement import ordered_targets, pad_sequences, rearranged_target_matrix, rearranged_targets
from labelchain.agents.supervised import carve_validation, teacher_forcing_loss
from labelchain.agents.config import Config
from labelchain.agents.training import train_epochs
from labelchain.envs.data.dataset import Split
from labelchain.envs.metrics import evaluate
from labelchain.envs.orderings import LabelOrdering

L = 6
STOP = L


def test_pad_sequences_exact():
    padded = pad_sequences(np.array([4, 1, 2, 0, 5]), np.array([2, 0, 3]), stop_id=STOP)
    assert padded.tolist() == [[4, 1, 6, -1], [6, -1, -1, -1], [2, 0, 5, 6]]
    assert pad_sequences(np.array([3]), np.array([1, 0]), stop_id=None).tolist() == [[3], [-1]]


def test_ordered_targets_exact():
    Y = sp.csr_matrix(np.array([[1, 1, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1]], dtype=bool))
    ordering = LabelOrdering("freq2rare", np.array([1, 5, 2, 9, 0, 3]))
    assert ordered_targets(Y, ordering).tolist() == [[3, 1, 0, STOP], [STOP, -1, -1, -1], [5, 4, STOP, -1]]


def test_rearranged_targets_keep_order_drop_wrong_append_missed_then_stop():
    sampled = np.array([[3, 1, 5, STOP, -1], [2, 0, -1, -1, -1], [-1, -1, -1, -1, -1], [4, 2, 0, 1, 5]])
    gold = [np.array([1, 3, 4]), np.array([0, 2]), np.array([5]), np.array([], dtype=np.int64)]
    targets = rearranged_targets(sampled, gold, L, np.random.default_rng(0))
    # doc 0: keeps 3, 1 in the sample's order, drops 5, appends missed 4
    assert [t.tolist() for t in targets] == [[3, 1, 4, STOP], [2, 0, STOP], [5, STOP], [STOP]]
    gold_csr = sp.csr_matrix((np.ones(6, bool), np.concatenate(gold), [0, 3, 5, 6, 6]), shape=(4, L))
    matrix = rearranged_target_matrix(sampled, gold_csr, np.random.default_rng(0))
    assert matrix.tolist() == [[3, 1, 4, STOP], [2, 0, STOP, -1], [5, STOP, -1, -1], [STOP, -1, -1, -1]]
    as_lists = rearranged_targets([[3, 1, 5], [2, 0], [], [4, 2, 0, 1, 5]], gold, L, np.random.default_rng(0))
    assert [t.tolist() for t in as_lists] == [t.tolist() for t in targets]


def test_missed_labels_are_appended_in_random_seeded_order():
    sampled, gold = np.array([[2, 5]]), [np.array([0, 1, 2, 3])]
    tails = set()
    for seed in range(20):
        target = rearranged_targets(sampled, gold, L, np.random.default_rng(seed))[0].tolist()
        assert target[0] == 2 and target[-1] == STOP and sorted(target[1:-1]) == [0, 1, 3]
        tails.add(tuple(target[1:-1]))
    assert len(tails) > 1
    again = rearranged_targets(sampled, gold, L, np.random.default_rng(3))[0].tolist()
    assert again == rearranged_targets(sampled, gold, L, np.random.default_rng(3))[0].tolist()


def test_teacher_forcing_loss_is_the_masked_stepwise_cross_entropy():
    torch.manual_seed(0)
    policy = ChainPolicy(5, L, hidden_size=8, label_embed_size=4).eval()
    X = np.random.default_rng(0).normal(size=(2, 5)).astype(np.float32)
    targets = torch.tensor([[3, 1, STOP], [STOP, -1, -1]])
    expected, count = 0.0, 0
    state, last, emitted = policy.initial_state(X), torch.tensor([-1, -1]), torch.zeros(2, L + 1, dtype=torch.bool)
    for t in range(3):
        with torch.no_grad():
            logits, _, state = policy.step(state, last)
        log_p = torch.log_softmax(logits.masked_fill(emitted, float("-inf")), dim=-1)
        for row in range(2):
            if targets[row, t] >= 0:
                expected, count = expected - float(log_p[row, targets[row, t]]), count + 1
                emitted[row, targets[row, t]] = True
        last = targets[:, t]
    loss = teacher_forcing_loss(policy, X, targets)
    assert loss.item() == pytest.approx(expected / count, rel=1e-5)
    assert teacher_forcing_loss(policy, X, targets, mask_emitted=False).item() > loss.item()


def test_carve_validation_partitions_the_split():
    split = Split(np.arange(20, dtype=np.float32)[:, None], sp.csr_matrix((20, 3), dtype=bool))
    train, val = carve_validation(split, 0.25, seed=1)
    assert len(train) == 15 and len(val) == 5
    assert sorted(np.concatenate([train.X[:, 0], val.X[:, 0]]).tolist()) == list(range(20))
    assert np.array_equal(carve_validation(split, 0.25, seed=1)[1].X, val.X)
    with pytest.raises(ValueError, match="fraction"):
        carve_validation(split, 1.5, seed=0)


def _synthetic_split(n=60, n_features=12, seed=0) -> Split:
    rng = np.random.default_rng(seed)
    X = sp.random(n, n_features, density=0.3, format="csr", dtype=np.float32, random_state=seed)
    Y = sp.csr_matrix(rng.random((n, L)) < 0.3)
    return Split(X, Y)


@pytest.mark.parametrize("ordering", ["always_random", "rearrange"])
@pytest.mark.slow
def test_training_is_seeded(ordering):
    split = _synthetic_split()
    config = Config.of(epochs=2, batch_size=16, seed=5, patience=10)

    def trained(seed: int) -> dict:
        torch.manual_seed(0)
        policy = ChainPolicy(12, L, hidden_size=8, label_embed_size=4, dropout=0.2)
        train_epochs(policy, split, config.changed(seed=seed), learner=ordering, progress=False)
        return policy.state_dict()

    first, second, other = trained(5), trained(5), trained(6)
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_training_rejects_bad_arguments():
    split = _synthetic_split()
    policy = ChainPolicy(12, L, hidden_size=8)
    with pytest.raises(ValueError, match="learner must be one of"):
        train_epochs(policy, split, Config.of(epochs=1), learner="alphabetical", progress=False)
    with pytest.raises(ValueError, match="select_metric"):
        train_epochs(policy, split, Config.of(epochs=1, select_metric="accuracy"), progress=False)
    with pytest.raises(ValueError, match="12 features x 7 labels"):
        train_epochs(ChainPolicy(12, 7), split, Config.of(epochs=1), progress=False)


def _most_frequent_baseline_f1(dataset) -> float:
    """Predict the m most frequent training labels for every test document (m = mean labels per doc)."""
    m = int(round(dataset.train.Y.sum() / len(dataset.train)))
    top = np.argsort(-dataset.label_freq, kind="stable")[:m]
    Y_pred = np.zeros((len(dataset.test), dataset.n_labels), dtype=bool)
    Y_pred[:, top] = True
    return evaluate(dataset.test.Y, Y_pred=sp.csr_matrix(Y_pred))["example_f1"]


@pytest.mark.needs_data
@pytest.mark.parametrize("ordering", ["freq2rare", "rearrange"])
@pytest.mark.slow
def test_learns_emotions_beyond_most_frequent_labels(emotions, ordering):
    """Twelve epochs of training beat the most-frequent-labels baseline (0.389) by >= 0.15 example F1."""
    baseline = _most_frequent_baseline_f1(emotions)
    torch.manual_seed(0)
    policy = ChainPolicy(emotions.n_features, emotions.n_labels, hidden_size=64, label_embed_size=16)
    policy.fit_input_normalization(emotions.train.X)
    config = Config.of(epochs=12, batch_size=32, lr=3e-3, patience=4, seed=0)  # epochs, not seconds: same result
    history = train_epochs(policy, emotions.train, config, learner=ordering, progress=False)  # on a busy machine
    assert 0 <= history.best_epoch < len(history.epochs)
    Y_pred, scores = predict(policy, emotions.test.X, max_steps=emotions.max_labels_per_doc + 1)
    metrics = evaluate(emotions.test.Y, scores=scores, Y_pred=Y_pred)
    assert metrics["example_f1"] >= baseline + 0.15, (metrics, baseline)
    assert metrics["P@1"] >= 0.55, metrics
