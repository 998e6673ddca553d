"""Benchmark and load-generation tooling for provgraph."""
