"""CLI commands that live with their subsystem; uslbench/cli.py adds them to the group."""
