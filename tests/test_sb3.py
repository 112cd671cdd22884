"""sb3-contrib MaskablePPO on LabelChainEnv: plain MultiInputPolicy and the ChainPolicy adapter."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sb3_contrib import MaskablePPO

from labelchain.agents.decoding import greedy_decode, predict
from labelchain.agents.policy import ChainPolicy
from labelchain.agents.sb3_adapter import ChainPolicyAdapter, chain_policy_from, make_maskable_ppo
from labelchain.envs.label_env import LabelChainEnv
from labelchain.envs.mcg import MCGSpec, emitted_mask

pytestmark = pytest.mark.slow  # SB3 learning: minutes in all; `pytest -m 'not slow'` skips them

EVAL_DOCS = 200
TRAIN_STEPS = 2048  # seeds 0-3 all reach ~0.44-0.47 greedy F1 here, both policies
MARGIN = 0.08  # trained greedy mean F1 must beat the random valid policy's by this much (measured: 0.44-0.47 vs 0.29)
PPO_ARGS = dict(n_steps=512, batch_size=64, n_epochs=8, learning_rate=1e-3, device="cpu", verbose=0)
CHAIN_CONFIG = {"hidden_size": 32, "label_embed_size": 8}
TINY_PPO = dict(n_steps=32, batch_size=16, n_epochs=2, device="cpu")


@pytest.fixture(scope="module")
def random_return(emotions) -> float:
    """Mean return of a uniformly random valid policy on the first EVAL_DOCS train docs (5 draws each)."""
    env, rng, total = LabelChainEnv(emotions), np.random.default_rng(0), 0.0
    for _ in range(5):
        for doc in range(EVAL_DOCS):
            env.reset(options={"doc_index": doc})
            done = False
            while not done:
                action = rng.choice(np.flatnonzero(env.action_masks()))
                _, reward, terminated, truncated, _ = env.step(int(action))
                total, done = total + reward, terminated or truncated
    return total / (5 * EVAL_DOCS)


@pytest.fixture(scope="module")
def adapter_model(emotions) -> MaskablePPO:
    torch.manual_seed(0)
    model = make_maskable_ppo(LabelChainEnv(emotions), CHAIN_CONFIG, seed=0, **PPO_ARGS)
    return model.learn(TRAIN_STEPS)


def greedy_return(model: MaskablePPO, dataset) -> float:
    """Mean episodic return of the model acting greedily (masked) on the first EVAL_DOCS train docs."""
    env, total = LabelChainEnv(dataset), 0.0
    for doc in range(EVAL_DOCS):
        obs, _ = env.reset(options={"doc_index": doc})
        done = False
        while not done:
            action, _ = model.predict(obs, action_masks=env.action_masks(), deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(int(action))
            total, done = total + reward, terminated or truncated
    return total / EVAL_DOCS


def visited_observations(dataset, n_docs: int = 12, seed: int = 0):
    """Observations (stacked dict of arrays) and masks along random valid episodes, histories of all lengths."""
    env, rng = LabelChainEnv(dataset), np.random.default_rng(seed)
    observations, masks = [], []
    for doc in range(n_docs):
        obs, _ = env.reset(options={"doc_index": doc})
        done = False
        while not done:
            observations.append(obs)
            masks.append(env.action_masks())
            valid = np.flatnonzero(env.action_masks()[:-1])  # walk labels; STOP only when none is left
            action = rng.choice(valid) if len(valid) else env.task.stop_action
            obs, _, terminated, truncated, _ = env.step(int(action))
            done = terminated or truncated
    stacked = {key: np.stack([o[key] for o in observations]) for key in observations[0]}
    return stacked, np.stack(masks)


@pytest.mark.needs_data
def test_plain_multi_input_maskable_ppo_beats_random_valid_policy(emotions, random_return):
    model = MaskablePPO("MultiInputPolicy", LabelChainEnv(emotions), seed=0, **PPO_ARGS).learn(TRAIN_STEPS)
    trained = greedy_return(model, emotions)
    assert trained > random_return + MARGIN, f"trained {trained:.3f} vs random {random_return:.3f}"


@pytest.mark.needs_data
def test_adapter_trains_chain_policy_weights_that_decode_standalone(emotions, random_return, adapter_model, tmp_path):
    trained = greedy_return(adapter_model, emotions)
    assert trained > random_return + MARGIN, f"trained {trained:.3f} vs random {random_return:.3f}"

    chain = chain_policy_from(adapter_model)
    assert isinstance(chain, ChainPolicy)
    for key, value in adapter_model.policy.chain.state_dict().items():
        assert torch.equal(chain.state_dict()[key], value), key
    chain.save(tmp_path / "chain")
    loaded = ChainPolicy.load(tmp_path / "chain")
    cap = LabelChainEnv(emotions).task.max_steps
    sets, scores = predict(chain, emotions.test.X, max_steps=cap)
    sets_loaded, scores_loaded = predict(loaded, emotions.test.X, max_steps=cap)
    assert (sets != sets_loaded).nnz == 0 and np.array_equal(scores, scores_loaded)
    assert sets.shape == emotions.test.Y.shape and sets.nnz > 0
    assert np.diff(sets.indptr).max() <= cap
    chains = greedy_decode(chain, emotions.test.X, max_steps=cap).labels.numpy()
    for row in chains:  # the chains behind the sets: no label twice, within the cap
        emitted = row[row >= 0]
        assert len(set(emitted.tolist())) == len(emitted) <= cap

    # The standalone policy acts as the SB3 model does (greedy, masked) on the env.
    obs, masks = visited_observations(emotions)
    history = np.where(obs["history"] == chain.n_labels, -1, obs["history"])
    chain.eval()
    with torch.no_grad():
        logits, _ = chain.prefix_logits(obs["features"], torch.from_numpy(history))
    expected = logits.masked_fill(~torch.from_numpy(masks), float("-inf")).argmax(dim=1).numpy()
    actions, _ = adapter_model.predict(obs, action_masks=masks, deterministic=True)
    np.testing.assert_array_equal(actions, expected)


@pytest.mark.needs_data
def test_adapter_probabilities_equal_prefix_logits_softmax(emotions, adapter_model):
    policy: ChainPolicyAdapter = adapter_model.policy
    policy.set_training_mode(False)
    chain = policy.chain
    obs, masks = visited_observations(emotions)
    assert (obs["history"] < chain.n_labels).sum(axis=1).max() >= 3  # histories of several lengths
    obs_tensor, vectorized = policy.obs_to_tensor(obs)  # SB3's own conversion path
    assert vectorized
    history = torch.from_numpy(np.where(obs["history"] == chain.n_labels, -1, obs["history"]))
    mask_tensor = torch.from_numpy(masks)
    with torch.no_grad():
        logits, values = chain.prefix_logits(obs["features"], history)
        adapter_logits, adapter_values = policy.logits_and_values(obs_tensor)
        assert torch.equal(adapter_logits, logits) and torch.equal(adapter_values[:, 0], values)
        assert torch.equal(policy.predict_values(obs_tensor)[:, 0], values)

        unmasked = policy.get_distribution(obs_tensor).distribution.probs
        torch.testing.assert_close(unmasked, torch.softmax(logits, dim=1), rtol=1e-6, atol=1e-7)
        masked = policy.get_distribution(obs_tensor, action_masks=masks).distribution.probs
        expected = torch.softmax(logits.masked_fill(~mask_tensor, float("-inf")), dim=1)
        torch.testing.assert_close(masked, expected, rtol=1e-6, atol=1e-7)

        actions = torch.from_numpy(np.array([np.flatnonzero(m)[-1] for m in masks]))
        eval_values, log_prob, entropy = policy.evaluate_actions(obs_tensor, actions, mask_tensor)
        torch.testing.assert_close(log_prob, expected.log().gather(1, actions[:, None])[:, 0], rtol=1e-5, atol=1e-6)
        assert torch.equal(eval_values[:, 0], values)
        plogp = torch.where(mask_tensor, expected * expected.log(), torch.zeros(()))
        torch.testing.assert_close(entropy, -plogp.sum(dim=1), rtol=1e-5, atol=1e-6)

        # Masked actions are never chosen, greedy or sampled.
        for deterministic in (True, False):
            chosen, _, _ = policy(obs_tensor, deterministic=deterministic, action_masks=masks)
            assert masks[np.arange(len(masks)), chosen.numpy()].all()


@pytest.mark.needs_data
def test_sb3_save_load_round_trip_gives_identical_predictions(emotions, adapter_model, tmp_path):
    path = tmp_path / "maskable_ppo.zip"
    adapter_model.save(path)
    loaded = MaskablePPO.load(path, device="cpu")
    assert isinstance(loaded.policy, ChainPolicyAdapter)
    assert loaded.policy.chain.config == adapter_model.policy.chain.config
    obs, masks = visited_observations(emotions, seed=1)
    for deterministic in (True, False):
        if not deterministic:
            torch.manual_seed(5)
        before, _ = adapter_model.predict(obs, action_masks=masks, deterministic=deterministic)
        if not deterministic:
            torch.manual_seed(5)
        after, _ = loaded.predict(obs, action_masks=masks, deterministic=deterministic)
        np.testing.assert_array_equal(before, after)
    obs_tensor, _ = loaded.policy.obs_to_tensor(obs)
    with torch.no_grad():
        assert torch.equal(
            loaded.policy.get_distribution(obs_tensor, masks).distribution.probs,
            adapter_model.policy.get_distribution(obs_tensor, masks).distribution.probs,
        )


def test_make_maskable_ppo_starts_from_a_given_chain_policy(tiny_dataset):
    env = LabelChainEnv(tiny_dataset)
    torch.manual_seed(3)
    source = ChainPolicy(3, 4, hidden_size=8, label_embed_size=4, dropout=0.0)
    source.fit_input_normalization(tiny_dataset.train.X)
    before = {key: value.clone() for key, value in source.state_dict().items()}
    model = make_maskable_ppo(env, source, seed=0, n_steps=32, batch_size=16, n_epochs=2, device="cpu")
    started = chain_policy_from(model)
    for key, value in before.items():
        assert torch.equal(started.state_dict()[key], value), key
    assert started.config == source.config
    model.learn(64)
    assert all(torch.equal(source.state_dict()[key], value) for key, value in before.items())  # original untouched
    assert any(not torch.equal(chain_policy_from(model).state_dict()[key], before[key]) for key in before)

    obs, _ = env.reset(options={"doc_index": 3})
    obs, *_ = env.step(1)  # history [1]; the adapter sees [1, -1, ...]
    tensor_obs, _ = model.policy.obs_to_tensor(obs)
    with torch.no_grad():
        adapter_logits, _ = model.policy.logits_and_values(tensor_obs)
        model.policy.chain.eval()
        logits, _ = model.policy.chain.prefix_logits(obs["features"][None], torch.tensor([[1]]))
    assert torch.equal(adapter_logits, logits)


def test_same_seed_same_weights_and_clear_errors(tiny_dataset):
    def train(seed: int) -> ChainPolicy:
        model = make_maskable_ppo(
            LabelChainEnv(tiny_dataset), CHAIN_CONFIG, seed=seed, n_steps=32, batch_size=16, n_epochs=2, device="cpu"
        )
        return chain_policy_from(model.learn(64))

    first, again, other = train(1), train(1), train(2)
    assert all(torch.equal(value, again.state_dict()[key]) for key, value in first.state_dict().items())
    assert any(not torch.equal(value, other.state_dict()[key]) for key, value in first.state_dict().items())

    with pytest.raises(ValueError, match="n_labels=5 but the env has 4"):
        make_maskable_ppo(LabelChainEnv(tiny_dataset), ChainPolicy(3, 5, hidden_size=8))
    with pytest.raises(ValueError, match="unknown ChainPolicy config keys"):
        make_maskable_ppo(LabelChainEnv(tiny_dataset), {"hidden": 8})


# ---------------------------------------------------------------------- MCG (cluster tokens before labels)
MCG_SPEC = MCGSpec.from_assignment(np.array([0, 1, 0, 1]), 2, restrict=True)  # clusters {0, 2} and {1, 3}
LABEL, CLUSTER, STOP = slice(0, 4), slice(4, 6), 6  # action ids of the MCG env over tiny_dataset


def test_maskable_ppo_trains_an_mcg_chain_under_the_env_masks(tiny_dataset, tmp_path):
    env = LabelChainEnv(tiny_dataset, mcg=MCG_SPEC)
    model = make_maskable_ppo(env, {"hidden_size": 8, "label_embed_size": 4}, seed=0, **TINY_PPO)
    before = {key: value.clone() for key, value in model.policy.chain.state_dict().items()}
    model.learn(64)
    chain = chain_policy_from(model)
    assert chain.config["mcg"] == MCG_SPEC.config() and chain.label_columns == 4
    assert any(not torch.equal(chain.state_dict()[key], value) for key, value in before.items())

    # Every rollout step obeyed the constraint: no cluster token once a label is out, labels only
    # from an emitted cluster (restrict), nothing twice.
    buffer = model.rollout_buffer
    histories = buffer.observations["history"].reshape(-1, env.task.max_steps).astype(np.int64)
    actions = buffer.actions.reshape(-1).astype(np.int64)
    masks = buffer.action_masks.reshape(len(actions), -1).astype(bool)
    assert np.array_equal(masks, MCG_SPEC.allowed_actions(emitted_mask(histories, 6)))
    assert masks[np.arange(len(actions)), actions].all()
    after_label = (histories < 4).any(axis=1)
    assert after_label.any() and not ((actions >= 4) & (actions < 6))[after_label].any()

    # The env's masks on a hand-made path, and the adapter gives masked actions zero probability.
    obs, _ = env.reset(options={"doc_index": 0})
    expected = [
        [0, 0, 0, 0, 1, 1, 1],  # start: no label before a cluster (restrict)
        [1, 0, 1, 0, 0, 1, 1],  # after cluster 0 (id 4): its labels 0 and 2, or cluster 1
        [0, 0, 1, 0, 0, 0, 1],  # after label 0: no more cluster tokens
    ]
    for action, mask in zip([4, 0, None], expected):
        assert env.action_masks().tolist() == [bool(m) for m in mask]
        tensor_obs, _ = model.policy.obs_to_tensor(obs)
        with torch.no_grad():
            probs = model.policy.get_distribution(tensor_obs, env.action_masks()[None]).distribution.probs[0]
        assert torch.equal(probs > 0, torch.tensor(mask, dtype=torch.bool))
        if action is not None:
            obs, *_ = env.step(action)

    # The policy handed back decodes under the same constraint and predicts label columns only;
    # SB3's save/load keeps the spec.
    sets, _ = predict(chain, tiny_dataset.test.X, max_steps=env.task.max_steps)
    assert sets.shape == (2, 4)
    model.save(tmp_path / "mcg.zip")
    assert MaskablePPO.load(tmp_path / "mcg.zip", device="cpu").policy.chain.config["mcg"] == MCG_SPEC.config()


def test_mcg_chain_and_env_must_agree(tiny_dataset):
    plain = ChainPolicy(3, 6, hidden_size=8)
    other = MCGSpec.from_assignment(np.array([1, 0, 1, 0]), 2, restrict=True)
    with pytest.raises(ValueError, match="chain policy has no mcg clusters but the env has some"):
        make_maskable_ppo(LabelChainEnv(tiny_dataset, mcg=MCG_SPEC), plain, **TINY_PPO)
    with pytest.raises(ValueError, match="chain policy has mcg clusters but the env has other ones"):
        make_maskable_ppo(LabelChainEnv(tiny_dataset, mcg=MCG_SPEC), ChainPolicy(3, 6, hidden_size=8, mcg=other))
    with pytest.raises(ValueError, match="chain policy has mcg clusters but the env has none"):
        make_maskable_ppo(LabelChainEnv(tiny_dataset), {"mcg": MCG_SPEC.config()}, **TINY_PPO)
