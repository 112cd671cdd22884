"""labelchain.experiments: the user scripts at this level (train_rl, the grids, the benchmarks), their
plumbing in rooms below: `run/` (flags, presets, the run folder, one learner's loop, the final report),
`grid/` (cells run locally or as Ray trials, rows from run folders), `reports/` (results markdown).

Scripts run as files (`python experiments/train_rl.py`, after `pip install -e .`) or as modules
(`python -m labelchain.experiments.train_rl`); code imports them by package path
(`from labelchain.experiments.train_rl import Args, main`).
"""
