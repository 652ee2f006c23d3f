"""Benchmarks: where speed is claimed. Every figure is a ratio against a baseline measured
in the same run, a median with p10/p90, on a named device. Run from the repository root."""
