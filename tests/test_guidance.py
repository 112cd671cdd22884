"""BCL cluster guidance: the prediction rule, conditioning, loss and gold columns exactly, the policy
hooks, every learner training a guided policy, and learning on emotions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from labelchain.agents.decoding import predict
from labelchain.agents.guidance import ClusterGuidance, with_gold_clusters
from labelchain.agents.learner_base import LearnerConfig
from labelchain.agents.learners import LEARNERS, make_learner
from labelchain.agents.policy import ChainPolicy
from labelchain.envs.data.dataset import Split
from labelchain.envs.label_clusters import kmeans_clusters, pifa_embeddings
from labelchain.envs.metrics import evaluate


def _guidance() -> ClusterGuidance:
    g = ClusterGuidance(doc_size=2, n_clusters=3, weight=2.0, anneal=True)
    with torch.no_grad():
        g.head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))
        g.head.bias.copy_(torch.tensor([0.0, 0.0, -5.0]))
        g.project.weight.copy_(torch.tensor([[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]]))
    return g


def test_prediction_rule_sigmoid_half_and_at_least_one():
    doc = torch.tensor([[2.0, -1.0], [1.0, 1.0], [-1.0, -2.0], [4.0, 3.0]])
    # logits: [2, -1, -6] -> {0}; [1, 1, -7] -> {0, 1}; [-1, -2, -2] -> none above 0, argmax {0};
    # [4, 3, -12] -> {0, 1}
    assert _guidance().predict(doc).tolist() == [[1, 0, 0], [1, 1, 0], [1, 0, 0], [1, 1, 0]]


def test_conditioning_adds_the_projected_cluster_vector():
    doc = torch.tensor([[0.5, 0.5]])
    got = _guidance().condition(doc, torch.tensor([[1.0, 0.0, 1.0]]))
    assert got.tolist() == [[0.5 + 1 + 3, 0.5 + 10 + 30]]


def test_bce_and_annealed_weight():
    g = _guidance()
    doc = torch.tensor([[2.0, -1.0]])  # logits 2, -1, -6
    gold = torch.tensor([[1.0, 1.0, 0.0]])

    def sig(x: float) -> float:
        return 1 / (1 + math.exp(-x))

    expected = -(math.log(sig(2)) + math.log(sig(-1)) + math.log(1 - sig(-6))) / 3
    assert float(g.loss(doc, gold).detach()) == pytest.approx(expected)
    assert [g.loss_weight(e) for e in (1, 2, 4)] == [2.0, 1.0, 0.5]
    assert ClusterGuidance(2, 3, weight=2.0).loss_weight(4) == 2.0


def test_gold_cluster_columns(tiny_dataset):
    # labels 0..3 -> clusters 1, 0, 1, 2; gold sets {0,2}, {1}, {}, {0,1,3}
    label_cluster = np.array([1, 0, 1, 2])
    guided = with_gold_clusters(tiny_dataset.train, label_cluster, 3)
    assert guided.X[:, 3:].tolist() == [[0, 1, 0], [1, 0, 0], [0, 0, 0], [1, 1, 1]]
    assert (guided.X[:, :3] == tiny_dataset.train.X).all() and (guided.Y != tiny_dataset.train.Y).nnz == 0
    sparse = with_gold_clusters(Split(sp.csr_matrix(tiny_dataset.train.X), tiny_dataset.train.Y), label_cluster, 3)
    assert sp.issparse(sparse.X) and (sparse.X.toarray() == guided.X).all()


def test_policy_uses_gold_columns_in_training_and_its_head_otherwise(tiny_dataset):
    label_cluster = np.array([1, 0, 1, 2])
    guided = with_gold_clusters(tiny_dataset.train, label_cluster, 3)
    torch.manual_seed(0)
    plain = ChainPolicy(3, 4, hidden_size=8).eval()
    torch.manual_seed(0)
    policy = ChainPolicy(3, 4, hidden_size=8, n_clusters=3).eval()
    for key, value in plain.state_dict().items():  # guidance is created last: same other weights
        assert torch.equal(value, policy.state_dict()[key])
    text = policy._encode_text(tiny_dataset.train.X)
    gold = torch.from_numpy(guided.X[:, 3:])
    assert torch.allclose(policy.encode(guided.X), text + policy.guidance.project(gold))
    assert torch.allclose(policy.encode(sp.csr_matrix(guided.X)), policy.encode(guided.X), atol=1e-6)
    predicted = torch.from_numpy(policy.predicted_clusters(tiny_dataset.train.X)).float()
    assert (predicted.sum(dim=1) >= 1).all()
    assert torch.allclose(policy.encode(tiny_dataset.train.X), text + policy.guidance.project(predicted))
    assert policy.feature_widths == (3, 6) and plain.feature_widths == (3,)
    with pytest.raises(ValueError, match="expects 3 .text. or 6"):
        policy.encode(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="gold cluster columns"):
        policy.guidance_loss(tiny_dataset.train.X)
    with pytest.raises(ValueError, match="n_clusters > 0"):
        plain.guidance_loss(guided.X)


def test_save_load_keeps_guidance(tmp_path, tiny_dataset):
    policy = ChainPolicy(3, 4, hidden_size=8, n_clusters=3, guidance_weight=0.5, guidance_anneal=True).eval()
    policy.save(tmp_path / "p")
    loaded = ChainPolicy.load(tmp_path / "p").eval()
    assert loaded.config == policy.config and loaded.guidance.anneal and loaded.guidance.weight == 0.5
    assert torch.equal(loaded.encode(tiny_dataset.test.X), policy.encode(tiny_dataset.test.X))


@pytest.mark.parametrize("name", LEARNERS)
def test_every_learner_trains_the_cluster_head(tiny_dataset, name):
    guided = with_gold_clusters(tiny_dataset.train, np.array([1, 0, 1, 2]), 3)
    torch.manual_seed(0)
    policy = ChainPolicy(3, 4, hidden_size=8, n_clusters=3).fit_input_normalization(guided.X)
    before = policy.guidance.head.weight.detach().clone()
    learner = make_learner(name, policy, guided, LearnerConfig(seed=0, batch_size=4))
    scalars = learner.update(np.arange(4))
    assert scalars["losses/cluster_bce"] > 0
    assert not torch.equal(before, policy.guidance.head.weight)


@pytest.mark.slow
def test_guided_chain_learns_emotions_beyond_most_frequent_labels(emotions):
    """BCL with 3 PIFA k-means clusters, rearrangement, 12 epochs: example F1 beats the most-frequent-
    labels baseline (0.389) by >= 0.15, and the predicted test clusters beat always predicting the
    most frequent cluster(s) by >= 0.1 micro F1."""
    m = round(emotions.train.Y.sum() / len(emotions.train))
    Y_base = np.zeros((len(emotions.test), emotions.n_labels), dtype=bool)
    Y_base[:, np.argsort(-emotions.label_freq, kind="stable")[:m]] = True
    baseline = evaluate(emotions.test.Y, Y_pred=sp.csr_matrix(Y_base))["example_f1"]
    label_cluster = kmeans_clusters(pifa_embeddings(emotions.train.X, emotions.train.Y), 3, seed=0)
    train = with_gold_clusters(emotions.train, label_cluster, 3)
    torch.manual_seed(0)
    policy = ChainPolicy(emotions.n_features, emotions.n_labels, hidden_size=64, label_embed_size=16, n_clusters=3)
    policy.fit_input_normalization(train.X)
    learner = make_learner("rearrange", policy, train, LearnerConfig(seed=0, lr=3e-3, batch_size=32))
    rng = np.random.default_rng(0)
    for _ in range(12):
        for rows in np.array_split(rng.permutation(len(train)), len(train) // 32):
            learner.update(rows)
    policy.eval()
    Y_pred, scores = predict(policy, emotions.test.X, max_steps=emotions.max_labels_per_doc + 1)
    metrics = evaluate(emotions.test.Y, scores=scores, Y_pred=Y_pred)
    assert metrics["example_f1"] >= baseline + 0.15, (metrics, baseline)

    gold_clusters = with_gold_clusters(emotions.test, label_cluster, 3).X[:, -3:] > 0
    cluster_freq = gold_clusters.sum(axis=0)
    k = round(gold_clusters.sum() / len(gold_clusters))
    base_clusters = np.zeros_like(gold_clusters)
    base_clusters[:, np.argsort(-cluster_freq, kind="stable")[:k]] = True
    cluster_f1 = evaluate(gold_clusters, Y_pred=policy.predicted_clusters(emotions.test.X))["micro_f1"]
    base_f1 = evaluate(gold_clusters, Y_pred=base_clusters)["micro_f1"]
    assert cluster_f1 >= base_f1 + 0.1, (cluster_f1, base_f1)


def test_mix_conditions_training_documents_on_predicted_clusters():
    g = _guidance()
    doc = torch.tensor([[2.0, -1.0], [1.0, 1.0]])  # predicted {0}, {0, 1}
    gold = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    assert torch.equal(g.training_clusters(doc, gold), gold)  # mix 0: always gold
    g.mix = 1.0
    assert g.training_clusters(doc, gold).tolist() == [[1, 0, 0], [1, 1, 0]]
    g.eval()
    assert torch.equal(g.training_clusters(doc, gold), gold)  # eval mode (RL rollouts): gold
    g.train()
    g.mix = 0.5
    torch.manual_seed(0)
    mixed = g.training_clusters(doc.repeat(200, 1), gold.repeat(200, 1))
    share = float((mixed != gold.repeat(200, 1)).any(dim=1).float().mean())
    assert 0.35 < share < 0.65
    with pytest.raises(ValueError, match="mix"):
        ClusterGuidance(2, 3, mix=1.5)
    policy = ChainPolicy(3, 4, hidden_size=8, n_clusters=3, guidance_mix=0.25)
    assert policy.config["guidance_mix"] == 0.25 and ChainPolicy.from_config(policy.config).guidance.mix == 0.25
    assert "guidance_mix" not in ChainPolicy(3, 4, hidden_size=8, n_clusters=3).config
