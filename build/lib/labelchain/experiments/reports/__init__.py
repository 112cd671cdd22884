"""The results files' markdown: tables and claims rendered from the rows in experiments/results/*.json."""
