"""Both environments and the MCG constraint refuse non-integral actions instead of truncating them."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from gymnasium.vector import AutoresetMode

from labelchain.envs.label_env import LabelChainEnv
from labelchain.envs.mcg import MCGSpec, emitted_mask
from labelchain.envs.vector_env import LabelChainVectorEnv

# 4 labels, 2 clusters (ids 4, 5), STOP 6: as in tests/test_mcg.py
MCG = MCGSpec(sp.csr_matrix(np.array([[1, 0], [1, 0], [0, 1], [1, 1]], dtype=bool)))
BAD = [1.5, np.float32(2.5), np.float64(np.nan), float("inf"), "1", np.array([0.5])]


@pytest.mark.parametrize("mcg", [None, MCG])
@pytest.mark.parametrize("action", BAD)
def test_single_env_refuses_non_integral_actions(tiny_dataset, mcg, action):
    env = LabelChainEnv(tiny_dataset, mcg=mcg)
    env.reset(options={"doc_index": 0})
    with pytest.raises(ValueError, match="is not an integer"):
        env.step(action)
    assert env.step(0)[0]["history"][0] == 0  # nothing was emitted by the refused step: 0 comes first


@pytest.mark.parametrize("mcg", [None, MCG])
@pytest.mark.parametrize("action", [1, np.int64(1), np.uint8(1), np.int32(1), np.array(1), 1.0, torch.tensor(1)])
def test_single_env_keeps_integral_actions(tiny_dataset, mcg, action):
    env = LabelChainEnv(tiny_dataset, mcg=mcg)
    env.reset(options={"doc_index": 0})
    assert env.step(action)[0]["history"][0] == 1


@pytest.mark.parametrize("mcg", [None, MCG])
def test_vector_env_refuses_non_integral_actions(tiny_dataset, mcg):
    vec = LabelChainVectorEnv(2, tiny_dataset, mcg=mcg, autoreset_mode=AutoresetMode.DISABLED)
    vec.reset(options={"doc_indices": np.array([0, 3])})
    for actions, shown in (([0, 1.5], r"actions\[1\] 1\.5"), (np.array([np.nan, 0.0]), r"actions\[0\] nan")):
        with pytest.raises(ValueError, match=shown + " is not an integer"):
            vec.step(actions)
    with pytest.raises(ValueError, match="is not an integer"):
        vec.step(np.array(["0", "1"]))
    for ok in (np.array([0, 1], dtype=np.int32), np.array([1.0, 0.0]), [np.int64(2), 2], torch.tensor([3, 3])):
        vec.step(ok)
    assert vec.history[:, :4].tolist() == [[0, 1, 2, 3], [1, 0, 2, 3]]


def test_mcg_refuses_non_integral_histories_and_cluster_ids():
    with pytest.raises(ValueError, match=r"history\[0, 1\] 4\.5 is not an integer"):
        emitted_mask(np.array([[0.0, 4.5]]), MCG.n_actions)
    assert emitted_mask(np.array([[0, 4]]), MCG.n_actions)[0].tolist() == [1, 0, 0, 0, 1, 0, 0]
    config = dict(MCG.config(), clusters_of_label=[[0], [0], [1.5], [0, 1]])
    with pytest.raises(ValueError, match=r"cluster id\[0\] 1\.5 is not an integer"):
        MCGSpec.from_config(config)


def test_integer_array_range_and_kinds():
    from labelchain.envs.actions import integer_array  # here, so the env tests above also run against older code

    assert integer_array(np.array([True, False])).tolist() == [1, 0]
    assert integer_array(2**62).tolist() == 2**62
    with pytest.raises(ValueError, match="not an integer in the int64 range"):
        integer_array(np.array([2**64 - 1], dtype=np.uint64))
    with pytest.raises(ValueError, match="not an integer in the int64 range"):
        integer_array([2**70, 1])
    with pytest.raises(ValueError, match="is not an integer"):
        integer_array(2.0**70)
