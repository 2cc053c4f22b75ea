"""Benchmarks behind ``smartio bench``: side-by-side measurements reported as ratios."""
