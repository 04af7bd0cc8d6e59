"""Benchmarks: each figure is a ratio against a baseline measured in the same run, same box.

Run with `invoke bench` (or `python -m bench`). Results go to bench/results/ as
markdown and JSON; see bench/README.md for what each figure means.
"""
