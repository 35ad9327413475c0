"""nestpool's benchmark suite: ``python -m benchmarks --quick``.

Not part of the installed package, and never run by pytest: performance is
measured here, as ratios against baselines taken in the same run.
"""
