"""Helpers of ``benchmarks/batching_bench.py`` beyond ``servebench`` (which it imports, unchanged)."""
