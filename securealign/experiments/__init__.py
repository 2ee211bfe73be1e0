"""Experiment running: the regimes and baselines, the precomputed assets, the report, and the task models the
protocol's tests, demo and benchmark use."""
