"""Evaluation: benchmarks, scoring and test-time scaling."""
