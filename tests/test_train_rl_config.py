"""train_rl --config FILE: a JSON of Args fields as defaults, flags on the command line win; bad files
give one error naming the file and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labelchain.experiments.run.config import ArgsError
from labelchain.experiments.grid.lookup import run_config
from labelchain.experiments.run.train_rl_args import Args, cli_args


def write(tmp: Path, content: object) -> str:
    path = tmp / "best_config.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def test_config_file_sets_fields_and_command_line_flags_win(tmp_path):
    config = write(
        tmp_path,
        {
            "dataset": "emotions",
            "learners": ["rearrange", "combined"],
            "hidden_size": 64,
            "dropout": 0.25,
            "rl_lr": 0.0007,
            "rl_weight": 0.8,
            "updates": 20,
        },
    )
    args = cli_args(["--config", config])
    assert (args.dataset, args.learners, args.hidden_size, args.dropout) == (
        "emotions",
        ["rearrange", "combined"],
        64,
        0.25,
    )
    assert (args.rl_lr, args.rl_weight, args.updates, args.config) == (0.0007, 0.8, 20, config)
    assert args.lr == Args().lr and args.seed == 0  # fields left out keep their defaults
    flags = cli_args(["--hidden-size", "32", "--config", config, "--learners", "combined", "--seed", "3"])
    assert (flags.hidden_size, flags.learners, flags.seed) == (32, ["combined"], 3)  # the command line wins
    assert (flags.dropout, flags.rl_weight) == (0.25, 0.8)
    assert run_config(args) == run_config(Args(**{**json.loads(Path(config).read_text())}))  # the path is no knob


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not JSON (line 1, column 2"),
        ([1, 2], "expected a JSON object"),
        ({"hiden_size": 64}, "unknown fields ['hiden_size']"),
        ({"hidden_size": "64"}, "field 'hidden_size' should be <class 'int'>, got '64'"),
        ({"learners": "combined"}, "field 'learners'"),
        ({"rl_lr": True}, "field 'rl_lr'"),
    ],
)
def test_a_bad_config_file_is_one_error_naming_the_file_and_field(tmp_path, content, message):
    config = write(tmp_path, content)
    with pytest.raises(ArgsError) as error:
        cli_args(["--config", config])
    assert str(error.value).startswith(f"--config {config}: ") and message in str(error.value)


def test_a_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(ArgsError, match="cannot read it"):
        cli_args(["--config", str(tmp_path / "nope.json")])
