"""Experiment scripts and their run plumbing; a package so that scripts, tests and notebooks import
them the same way (`from experiments.train_rl import Args, main`) with no `sys.path` edits.

Scripts still run as files (`python experiments/train_rl.py`, which needs the repo root importable:
`pip install -e .` provides it) or as modules (`python -m experiments.train_rl`).
"""
