"""asv benchmarks of provgraph (see benches/benchmarks/bench_*.py)."""
