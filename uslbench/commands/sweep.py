"""`sweep`: expand a grid of runs, skip what is done, run or submit the rest (uslbench.harness.sweep)."""
from __future__ import annotations

import os
from pathlib import Path

import click

from .. import DEFAULT_SEED
from ..registry import parse_overrides
from .options import config_overrides, data_root_option, device_option, results_root_option

EXECUTOR_CHOICE = click.Choice(["inline", "local", "slurm"])


@click.command()
@click.option("--preset", default=None, help="named sweep: `quick` = every CPU selector x linear, labelprop "
              "(+ fixmatch if registered) on digits, budgets 10/20/40, seeds 1-3, local executor")
@click.option("--file", "sweep_file", default=None, type=click.Path(dir_okay=False),
              help="YAML or JSON sweep file (keys: dataset, selector, learner, budget, seeds, encoder, "
                   "selector_config, learner_config, ...); command-line axes override it")
@click.option("--dataset", default=None, help="comma list, e.g. digits,cifar10")
@click.option("--selector", default=None, help="comma list, e.g. usl,random")
@click.option("--learner", default=None, help="comma list, e.g. linear,knn")
@click.option("--budget", default=None, help="comma list or ranges, e.g. 10,20,40")
@click.option("--seeds", default=None, help=f"comma list or ranges, e.g. 1-5 (default {DEFAULT_SEED})")
@click.option("--encoder", default=None, help="comma list (default: each data set's default encoder)")
@config_overrides("selector", "learner", "encoder")
@data_root_option(default_first="the sweep file's data_root, else ")
@click.option("--encoder-weights", default=None, help="weights file for the encoder")
@results_root_option()
@click.option("--executor", type=EXECUTOR_CHOICE, default=None,
              help="inline (this process), local (submitit processes) or slurm  [default: local]")
@click.option("--max-parallel", default=None, type=int, help="local: jobs at a time  [default: CPU count]")
@click.option("--runs-per-job", default=0, show_default=True, type=int,
              help="items per job; 0: automatic (local: one job per parallel slot; slurm: 1 GPU run or 25 cheap items)")
@click.option("--time", "time_text", default="120", show_default=True,
              help="time limit per job: minutes or [D-]HH:MM:SS (local and slurm); jobs resume when requeued")
@click.option("--partition", default=None, help="slurm partition")
@click.option("--gpus", default=0, show_default=True, type=int, help="GPUs per job for entries that train")
@click.option("--cpus", default=None, type=int, help="slurm CPUs per task")
@click.option("--mem", default=None, help="slurm memory per job, e.g. 16G")
@click.option("--array-parallelism", default=None, type=int, help="slurm: tasks of one array running at once")
@click.option("--account", default=None, help="slurm account")
@click.option("--qos", default=None, help="slurm quality of service")
@click.option("--sbatch", "sbatch_options", multiple=True, metavar="KEY=VALUE",
              help="extra sbatch option, e.g. constraint=a100 (repeatable)")
@device_option("cpu, cuda, cuda:N or auto (resolved inside each job)")
@click.option("--dry-run", is_flag=True, help="only show what is done / failed / running / new")
@click.option("--retry-failed", is_flag=True, help="also re-run runs whose record says failed")
@click.option("--wait/--no-wait", default=None,
              help="slurm: block until the jobs end, then print the leaderboard (inline/local always wait)")
@click.option("--leaderboard/--no-leaderboard", "show_leaderboard", default=True, show_default=True,
              help="print the sweep's leaderboard when it has waited")
def sweep(preset, sweep_file, dataset, selector, learner, budget, seeds, encoder, selector_config, learner_config,
          encoder_config, data_root, encoder_weights, results_root, executor, max_parallel, runs_per_job, time_text,
          partition, gpus, cpus, mem, array_parallelism, account, qos, sbatch_options, device, dry_run, retry_failed,
          wait, show_leaderboard) -> None:
    """Run a grid of (data set x selector x learner x budget x seed); skip what is done.

    \b
    Examples:
      python cli.py sweep --preset quick
      python cli.py sweep --selector usl,random --learner linear,knn --dataset digits \\
          --budget 10,20,40 --seeds 1-5 --executor local --max-parallel 2
      python cli.py sweep --file sweep.yaml --executor slurm --partition gpu --gpus 1 --time 4:00:00
    """
    # lazy: the harness imports the catalogue (torch), the report pandas; `sweep --help` stays light
    from ..harness.grid import build_sweep, preset_executor
    from ..harness.resources import Resources, parse_time_minutes
    from ..harness.sweep import run_sweep
    from ..report.leaderboard import write_leaderboard
    from .leaderboard import sweep_scope

    built = build_sweep(preset=preset, sweep_file=sweep_file, dataset=dataset, selector=selector, learner=learner,
                        budget=budget, seeds=seeds, encoder=encoder, selector_config=selector_config,
                        learner_config=learner_config, encoder_config=encoder_config, data_root=data_root,
                        encoder_weights=encoder_weights)
    for note in built.notes:
        click.echo(f"note: {note}", err=True)
    executor = executor or preset_executor(built.preset) or "local"
    resources = Resources(executor=executor, max_parallel=max_parallel or max(1, os.cpu_count() or 1),
                          time_min=parse_time_minutes(time_text), partition=partition, gpus=gpus, cpus=cpus, mem=mem,
                          array_parallelism=array_parallelism, account=account, qos=qos,
                          sbatch=parse_overrides(sbatch_options), runs_per_job=runs_per_job, device=device)
    if wait is None:
        wait = executor != "slurm"
    result = run_sweep(built, results_root, resources, retry_failed=retry_failed, dry_run=dry_run, wait=wait,
                       echo=click.echo)
    plan = result.plan
    counts = plan.counts()
    click.echo(f"{len(plan.runs)} runs: " + ", ".join(f"{n} {state}" for state, n in counts.items())
               + f" (to {'submit' if dry_run else 'run'}: {len(plan.to_submit)})")
    for message in result.warnings:  # unusable records found while planning, then the jobs' warnings
        click.echo(f"warning: {message}", err=True)
    if dry_run:
        for run in plan.to_submit[:10]:
            click.echo(f"  [{run.state.state}] {run.spec.short()}  ({run.key})")
        if len(plan.to_submit) > 10:
            click.echo(f"  ... and {len(plan.to_submit) - 10} more")
        return
    if not result.submitted:
        click.echo("nothing to submit: every run is done or running"
                   + ("" if retry_failed or not counts["failed"] else "; --retry-failed re-runs the failed ones"))
    if result.job_ids and executor == "slurm":
        click.echo(f"job ids: {' '.join(result.job_ids)}")
    if not result.waited:
        click.echo(f"follow with: python cli.py status {results_root}")
        return
    final = result.final_counts
    click.echo("after the sweep: " + ", ".join(f"{n} {state}" for state, n in final.items() if n))
    if final.get("failed") or final.get("crashed"):
        click.echo(f"see the failures with: python cli.py status {results_root}")
    if show_leaderboard and final.get("done"):
        keys, planned = sweep_scope(plan)
        out_dir = Path(results_root) / built.datasets[0] if built.preset and len(built.datasets) == 1 else None
        board = write_leaderboard(results_root, keys=keys, out_dir=built.leaderboard_output or out_dir,
                                  caption=built.leaderboard_caption, planned=planned,
                                  warn=lambda m: click.echo(f"warning: {m}", err=True))
        click.echo("")
        click.echo(board.text)
        click.echo(f"leaderboard: {board.path} (+ {len(board.plots)} plots)")
    if result.unfinished:  # scripts and CI must notice a grid that did not complete
        click.echo("sweep incomplete: " + ", ".join(f"{n} {state}" for state, n in result.unfinished.items())
                   + f" of {len(plan.runs)} runs (exit status 1); python cli.py status {results_root} lists them",
                   err=True)
        click.get_current_context().exit(1)
