"""Benchmarks (``make bench`` = ``python -m benchmarks``): not tests, never run by pytest.

See ``benchmarks/RESULTS.md`` for the figures of a full run and ``python -m benchmarks --help`` for options.
"""
