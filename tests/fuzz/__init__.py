"""Fuzzing harness for every model/recipe/profile loader (shared by tests/test_fuzz_loaders.py and benchmarks/)."""
