"""Microbenchmarks of lrfused against eager torch; entry point `python -m benchmarks.run`."""
