"""Reproducible benchmarks (not tests): ``python -m bench`` runs every ``bench/*.py`` with a
``main()``; ``python -m bench.throughput`` runs one."""
