"""The benchmarks: scripts that time and size the library (one thread unless measuring threads), each
printing its numbers beside a baseline run side by side. Run them as files:
`python experiments/bench/bench_scale.py`, `python experiments/bench/bench_training.py`, ...
"""
