"""Synthetic extreme label spaces (``synthetic-L{L}-s{seed}``): the scale benchmark's data.

No public data set here has more than 983 labels, so label spaces of 1,000 to 1,000,000 labels are
generated, and always named as synthetic. The generator hides a random label tree and makes the task
learnable from it:

- labels are the leaves of a balanced tree with ``branching`` children per node, placed in random
  order (label ids say nothing about the tree);
- every tree node owns ``features_per_node`` random feature ids, so labels that share ancestors share
  features (what PIFA embeddings and k-means trees can recover);
- label frequencies follow a power law (Zipf, exponent ``zipf``) over a random ranking of the labels;
- a document draws 1 + Poisson(``mean_labels`` - 1) labels by that law (repeats merged), and for each
  label and each node on its root-to-leaf path keeps each of the node's features with probability
  ``keep`` (value 1 + Exp(1) noise); ``noise_features`` uniformly random features are added; rows are
  L2-normalised, like TF-IDF rows.

Everything is drawn from one ``numpy`` generator seeded by ``seed``: same arguments, same data set.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from labelchain.envs.data.dataset import Dataset, Split

MAX_LABELS_PER_DOC = 30  # the draw of labels per document is capped here (keeps the step cap small)


def synthetic_name(n_labels: int, seed: int) -> str:
    return f"synthetic-L{n_labels}-s{seed}"


def make_synthetic(
    n_labels: int,
    seed: int = 0,
    *,
    n_train: int | None = None,
    n_test: int | None = None,
    n_features: int | None = None,
    branching: int = 16,
    features_per_node: int = 3,
    mean_labels: float = 3.0,
    zipf: float = 1.0,
    keep: float = 0.8,
    noise_features: int = 5,
) -> Dataset:
    """A seeded synthetic `Dataset` with `n_labels` labels (see the module docstring for the model).

    Defaults scale with L: ``n_train`` = max(1,000, 2 L), ``n_test`` = n_train / 4, ``n_features`` =
    min(max(1,000, 2 L), 65,536).
    """
    if n_labels < 2 or branching < 2:
        raise ValueError(f"need n_labels >= 2 and branching >= 2, got {n_labels}, {branching}")
    if not (0.0 < keep <= 1.0 and mean_labels >= 1.0 and zipf >= 0.0):
        raise ValueError(f"need 0 < keep <= 1, mean_labels >= 1, zipf >= 0; got {keep}, {mean_labels}, {zipf}")
    n_train = max(1000, 2 * n_labels) if n_train is None else int(n_train)
    n_test = max(1, n_train // 4) if n_test is None else int(n_test)
    n_features = min(max(1000, 2 * n_labels), 2**16) if n_features is None else int(n_features)
    rng = np.random.default_rng(seed)
    node_features = _tree_features(n_labels, branching, features_per_node, n_features, rng)
    rank = rng.permutation(n_labels)  # rank[label]: its place in the frequency law
    weights = 1.0 / (rank + 1.0) ** zipf
    probs = weights / weights.sum()
    splits = [
        _documents(n, probs, node_features, n_features, mean_labels, keep, noise_features, rng)
        for n in (n_train, n_test)
    ]
    return Dataset(
        name=synthetic_name(n_labels, seed),
        train=splits[0],
        test=splits[1],
        label_names=[f"synthetic_{i}" for i in range(n_labels)],
        source=(
            f"synthetic: hidden tree branching={branching}, zipf={zipf}, "
            f"mean_labels={mean_labels}, features_per_node={features_per_node}, keep={keep}, "
            f"noise_features={noise_features}, seed={seed}"
        ),
    )


def hidden_paths(n_labels: int, branching: int, seed: int) -> np.ndarray:
    """(L, depth) node ids of each label's path, leaf level first, as `make_synthetic` draws them.

    Node ids are unique across levels. Exposed for tests and analysis; the generator's first draw.
    """
    return _paths(n_labels, branching, np.random.default_rng(seed))


def _paths(n_labels: int, branching: int, rng: np.random.Generator) -> np.ndarray:
    position = rng.permutation(n_labels)  # the label's leaf slot in the balanced tree
    depth = max(1, int(np.ceil(np.log(n_labels) / np.log(branching))))
    columns, offset = [], 0
    for level in range(depth):  # level 0 = the leaf itself, then parents up to the root's children
        node = position // branching**level
        columns.append(node + offset)
        offset += int(node.max()) + 1
    return np.stack(columns, axis=1).astype(np.int64)


def _tree_features(
    n_labels: int, branching: int, per_node: int, n_features: int, rng: np.random.Generator
) -> np.ndarray:
    """(L, depth * per_node) feature ids of each label: those of every node on its path."""
    paths = _paths(n_labels, branching, rng)
    n_nodes = int(paths.max()) + 1
    owned = rng.integers(n_features, size=(n_nodes, per_node))
    return owned[paths].reshape(n_labels, -1)


def _documents(
    n_docs: int,
    probs: np.ndarray,
    node_features: np.ndarray,
    n_features: int,
    mean_labels: float,
    keep: float,
    noise_features: int,
    rng: np.random.Generator,
) -> Split:
    n_labels = len(probs)
    counts = np.minimum(1 + rng.poisson(mean_labels - 1.0, size=n_docs), MAX_LABELS_PER_DOC)
    doc_of = np.repeat(np.arange(n_docs, dtype=np.int64), counts)
    labels = rng.choice(n_labels, size=len(doc_of), p=probs)
    keys = np.unique(doc_of * n_labels + labels)  # merges repeats, sorts by (doc, label)
    doc_of, labels = keys // n_labels, keys % n_labels
    Y = sp.csr_matrix((np.ones(len(keys), dtype=bool), (doc_of, labels)), shape=(n_docs, n_labels))
    per_label = node_features.shape[1]
    feats = node_features[labels].ravel()
    rows = np.repeat(doc_of, per_label)
    kept = rng.random(len(feats)) < keep
    noise_rows = np.repeat(np.arange(n_docs, dtype=np.int64), noise_features)
    rows = np.concatenate([rows[kept], noise_rows])
    cols = np.concatenate([feats[kept], rng.integers(n_features, size=len(noise_rows))])
    values = (1.0 + rng.exponential(1.0, size=len(rows))).astype(np.float32)
    X = sp.csr_matrix((values, (rows, cols)), shape=(n_docs, n_features), dtype=np.float32)
    X.sum_duplicates()
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    X = sp.csr_matrix(sp.diags(1.0 / np.maximum(norms, 1e-12)) @ X, dtype=np.float32)
    return Split(X, Y)
