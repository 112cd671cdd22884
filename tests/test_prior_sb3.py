"""SB3's MaskablePPO trains a prior chain: the observation's prior columns are not features, the
policy's blocked labels and the env's shortlist masks agree, and the weights come back as a prior policy."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from labelchain.agents.prior_columns import prior_columns, with_prior_columns
from labelchain.agents.sb3_adapter import chain_policy_from, make_maskable_ppo
from labelchain.envs import LabelChainEnv
from labelchain.envs.chain_task import ChainTask
from labelchain.envs.data.dataset import Split
from labelchain.envs.shortlist import shortlist_from_scores

N_DOCS, N_FEATURES, N_LABELS, M = 8, 5, 6, 2


def test_maskable_ppo_trains_a_shortlisted_prior_chain() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N_DOCS, N_FEATURES)).astype(np.float32)
    scores = sp.csr_matrix(rng.normal(size=(N_DOCS, N_LABELS)).astype(np.float32))
    Y = sp.csr_matrix(rng.random((N_DOCS, N_LABELS)) < 0.3)
    shortlist = shortlist_from_scores(scores, M)
    X_prior = with_prior_columns(X, prior_columns(scores, M))
    env = LabelChainEnv(ChainTask(Split(X_prior, Y), N_LABELS, max_steps=N_LABELS + 1, shortlist=shortlist))
    config = {"hidden_size": 8, "label_embed_size": 4, "prior": "shared", "shortlist": True}
    model = make_maskable_ppo(env, config, seed=0, n_steps=32, batch_size=16, n_epochs=1, device="cpu")
    assert model.policy.chain.n_features == N_FEATURES
    model.learn(32)
    actions = model.rollout_buffer.actions.reshape(-1).astype(np.int64)
    features = model.rollout_buffer.observations["features"].reshape(len(actions), -1)
    docs = np.array([int(np.flatnonzero(np.isclose(X_prior, row).all(axis=1))[0]) for row in features])
    labels = actions < N_LABELS
    assert shortlist.toarray()[docs[labels], actions[labels]].all()
    policy = chain_policy_from(model)
    assert policy.config["prior"] == "shared" and policy.config["shortlist"] is True
    blocked = policy.document_prior(X_prior).blocked
    assert blocked is not None and (~blocked[:, :N_LABELS].numpy() == shortlist.toarray()).all()
    obs, _ = env.reset(options={"doc_index": 3})
    logits, _ = model.policy.logits_and_values({k: torch.as_tensor(v)[None] for k, v in obs.items()})
    assert torch.isinf(logits[0, :N_LABELS][torch.from_numpy(~shortlist.toarray()[3])]).all()
