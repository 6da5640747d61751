"""cgwd benchmarks: `make bench` (python -m bench)."""
