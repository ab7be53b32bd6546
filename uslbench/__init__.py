"""uslbench: benchmark suite and leaderboard harness for unsupervised selective labeling."""
__version__ = "0.1.0"
SCHEMA_VERSION = 1
