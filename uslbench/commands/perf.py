"""`perf`: speed micro-benchmarks (seconds and peak memory) written as markdown tables (uslbench.perf)."""
from __future__ import annotations

import click


@click.group("perf")
def perf_group() -> None:
    """Performance benchmarks (seconds and peak memory), written as markdown tables.

    \b
    Example:
      python cli.py perf selectors --quick
    """


@perf_group.command("selectors")
@click.option("--case", "cases", multiple=True, help="case name to run (repeatable; default: all, see --list)")
@click.option("--quick", is_flag=True, help="only the small cases (N = 50,000); skips the ImageNet-scale ones")
@click.option("--list", "list_cases", is_flag=True, help="list the cases and exit")
@click.option("--output", default="results/perf/selectors.md", show_default=True, help="markdown table to write")
@click.option("--timeout-seconds", default=1800, show_default=True, type=int, help="per case")
def perf_selectors(cases, quick, list_cases, output, timeout_seconds) -> None:
    """Time each selector on seeded L2-normalised Gaussian-mixture features, each case in its own
    subprocess (so peak memory does not mix), and write a markdown table.

    \b
    Example:
      python cli.py perf selectors --quick --output /tmp/perf.md
    """
    from ..perf import selectors as perf  # lazy: the cases import the catalogue; `--help` stays light

    if list_cases:
        for case in perf.CASES:
            click.echo(f"{case.name:<22} {case.describe()}")
        return
    chosen = perf.choose_cases(cases, quick)
    results = []
    for case in chosen:
        click.echo(f"running {case.name}: {case.describe()} ...")
        result = perf.run_case_subprocess(case, timeout_seconds)
        results.append(result)
        click.echo("  " + perf.result_line(result))
    path = perf.write_table(results, output)
    click.echo(f"wrote {path}")
