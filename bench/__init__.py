"""Benchmarks. Run all with `./scripts/bench` (or `.venv/bin/python -m bench`); results go
to docs/benchmarks.md. Speed targets live here, never in the test suite."""
