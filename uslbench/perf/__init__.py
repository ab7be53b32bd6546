"""Speed micro-benchmarks behind the `perf` command: selectors (seconds and peak memory per case) and
learners (training steps per second)."""
