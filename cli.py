"""Thin entry point: `python cli.py ...` is the same as the `uslbench` console script."""
from uslbench.cli import main

if __name__ == "__main__":
    main()
