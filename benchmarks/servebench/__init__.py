"""Helpers for ``benchmarks/serving_bench.py``: processes, HTTP probes, wrk, servers, report.

Everything here except ``fixture.py`` uses only the standard library, so the
benchmark can be started with any Python 3.11; ``fixture.py`` runs inside the
project venv (it needs numpy and scikit-learn).
"""
