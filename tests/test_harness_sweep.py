"""Sweeps: axes, sweep files, presets, planning states, idempotency, crash detection, bad input."""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from uslbench.harness.plan import chunk_specs, plan_sweep, plan_stages
from uslbench.harness.resources import Resources, parse_time_minutes
from uslbench.harness.status import scan_states, summarize
from uslbench.harness.grid import PRESETS, build_sweep, cpu_selectors, load_sweep_file, parse_int_list
from uslbench.harness.sweep import run_sweep
from uslbench.errors import UserError
from uslbench.registry import SELECTORS
from uslbench.selectors.random import RandomSelector
from uslbench.traits import SelectorTraits

REPO = Path(__file__).resolve().parents[1]


def small_sweep(**overrides):
    axes = dict(dataset="digits", selector="random,stratified", learner="linear", budget="10,20", seeds="1-2")
    axes.update(overrides)
    return build_sweep(**axes)


@pytest.fixture(scope="module")
def done_root(tmp_path_factory):
    """A results root where the 8 runs of small_sweep() are done (inline executor)."""
    root = tmp_path_factory.mktemp("sweep")
    result = run_sweep(small_sweep(), root, Resources(executor="inline"))
    assert result.submitted == 8 and result.final_counts["done"] == 8
    return root


def test_axis_parsing():
    assert parse_int_list("1-5", "Seed") == [1, 2, 3, 4, 5]
    assert parse_int_list("10,20,40", "Budget") == [10, 20, 40]
    assert parse_int_list("1-3,7", "Seed") == [1, 2, 3, 7]
    assert parse_int_list([10, "20-21"], "Budget") == [10, 20, 21]
    with pytest.raises(UserError, match="range '5-1' is empty"):
        parse_int_list("5-1", "Seed")
    with pytest.raises(UserError, match="'x' is not an integer"):
        parse_int_list("1,x", "Budget")
    assert parse_time_minutes("90") == 90 and parse_time_minutes("2:00:00") == 120
    assert parse_time_minutes("1-00:30:00") == 1470
    with pytest.raises(UserError, match="--time"):
        parse_time_minutes("soon")


def test_grid_and_scoped_overrides():
    sweep = build_sweep(dataset="digits", selector="usl,random", learner="linear,knn", budget="10,20,40",
                        seeds="1-5", selector_config=["usl.lam=1.0"], learner_config=["knn.k=3"])
    specs = sweep.specs()
    assert len(specs) == 2 * 2 * 3 * 5
    usl = [s for s in specs if s.selector == "usl"]
    assert all(s.selector_config == {"lam": "1.0"} for s in usl)
    assert all(s.selector_config == {} for s in specs if s.selector == "random")
    assert all(s.learner_config == {"k": "3"} for s in specs if s.learner == "knn")
    with pytest.raises(UserError, match="NAME.KEY=VALUE"):
        build_sweep(dataset="digits", selector="usl", learner="linear", budget="10", selector_config=["lam=1"])
    with pytest.raises(UserError, match="not in this sweep"):
        build_sweep(dataset="digits", selector="usl", learner="linear", budget="10", selector_config=["usel.lam=1"])
    with pytest.raises(UserError, match="needs --learner"):
        build_sweep(dataset="digits", selector="usl", budget="10")
    scoped = build_sweep(dataset="digits", selector="usl", learner="linear", budget="10", encoder="pixels",
                         encoder_config=["pixels.max_side=16"]).specs()
    assert [s.encoder_config for s in scoped] == [{"max_side": "16"}]
    with pytest.raises(UserError, match="name the encoder with --encoder"):
        build_sweep(dataset="digits", selector="usl", learner="linear", budget="10", encoder_config=["pixels.x=1"])


def test_sweep_file_yaml_json_and_errors(tmp_path):
    good = tmp_path / "sweep.yaml"
    good.write_text("dataset: digits\nselector: [usl, random]\nlearner: linear\nbudget: [10, 20]\nseeds: 1-3\n"
                    "selector_config: {usl: {lam: 1.0}}\n")
    sweep = build_sweep(sweep_file=good)
    assert (sweep.selectors, sweep.budgets, sweep.seeds) == (["usl", "random"], [10, 20], [1, 2, 3])
    assert sweep.selector_config == {"usl": {"lam": 1.0}}
    # the command line overrides the file
    assert build_sweep(sweep_file=good, budget="40").budgets == [40]
    as_json = tmp_path / "sweep.json"
    as_json.write_text(json.dumps({"dataset": "digits", "selector": "random", "learner": "knn", "budget": 10}))
    assert len(build_sweep(sweep_file=as_json).specs()) == 1

    unknown = tmp_path / "bad.yaml"
    unknown.write_text("dataset: digits\nselectors: [usl]\nlearner: linear\nbudget: 10\n")
    with pytest.raises(UserError, match=r"unknown keys: 'selectors' \(did you mean 'selector'\?\)"):
        load_sweep_file(unknown)
    empty = tmp_path / "empty.yaml"
    empty.write_text("dataset: digits\nselector: []\nlearner: linear\nbudget: 10\n")
    with pytest.raises(UserError, match="axis 'selector' is empty"):
        load_sweep_file(empty)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(UserError, match="could not be parsed"):
        load_sweep_file(broken)
    with pytest.raises(UserError, match="does not exist"):
        load_sweep_file(tmp_path / "missing.yaml")


def test_quick_preset_reads_the_registry_at_run_time(monkeypatch):
    @dataclass
    class _NoConfig:
        pass

    def refuse(self, *args, **kwargs):
        raise UserError("needs the moon encoder, which is not installed")

    def stand_in(**traits):
        return type("Z", (RandomSelector,), {"traits": SelectorTraits(uses_features=False, **traits)})

    SELECTORS.register("zz_gpu_thing", "test stand-in outside the quick preset")(stand_in(in_quick_preset=False))
    SELECTORS.register("zz_cpu_thing", "test stand-in that runs on CPU")(stand_in())
    SELECTORS.register("zz_clip_thing", "stand-in tied to CLIP")(stand_in(fixed_encoder="clip", in_quick_preset=False))
    SELECTORS.register("zz_refuses", "stand-in that refuses digits")(type("R", (RandomSelector,), {"validate": refuse}))
    monkeypatch.setitem(PRESETS["quick"], "ssl_learner", None)
    try:
        names = cpu_selectors()
        assert "zz_cpu_thing" in names and "zz_gpu_thing" not in names
        assert {"random", "usl", "stratified"} <= set(names)
        # every real selector whose traits say so, and only those
        real = {n for n in SELECTORS.names() if not n.startswith("zz_")}
        assert {n for n in names if n in real} == {n for n in real if SELECTORS.traits(n).in_quick_preset}
        assert not {"file", "clip_usl"} & set(names)
        sweep = build_sweep(preset="quick")
        assert sweep.datasets == ["digits"] and sweep.budgets == [10, 20, 40] and sweep.seeds == [1, 2, 3]
        assert "zz_cpu_thing" in sweep.selectors
        assert not {"zz_gpu_thing", "zz_clip_thing", "zz_refuses"} & set(sweep.selectors)
        assert sweep.notes == ["preset quick: left out selector zz_refuses: needs the moon encoder, which is not "
                               "installed"]
        assert sweep.learners[0] == "linear" and set(sweep.learners) <= {"linear", "labelprop"}
        assert build_sweep(preset="quick", selector="usl,random").selectors == ["usl", "random"]
    finally:
        SELECTORS.unregister("zz_gpu_thing")
        SELECTORS.unregister("zz_cpu_thing")
        SELECTORS.unregister("zz_clip_thing")
        SELECTORS.unregister("zz_refuses")
    with pytest.raises(UserError, match="Unknown sweep preset"):
        build_sweep(preset="huge")


def test_quick_preset_shortens_the_ssl_learner(monkeypatch):
    from uslbench.learners.probes import LinearConfig, LinearProbe
    from uslbench.registry import LEARNERS

    @dataclass
    class _LoopConfig(LinearConfig):
        steps: int = 400

    LEARNERS.register("zz_ssl", "test stand-in SSL learner", config=_LoopConfig)(type("S", (LinearProbe,), {}))
    monkeypatch.setitem(PRESETS["quick"], "ssl_learner", "zz_ssl")
    try:
        sweep = build_sweep(preset="quick")
        assert sweep.learners[-1] == "zz_ssl" and sweep.learner_config == {"zz_ssl": {"steps": 100}}
        assert build_sweep(preset="quick", learner_config=["zz_ssl.steps=7"]).learner_config == {"zz_ssl": {"steps": "7"}}
        only_linear = build_sweep(preset="quick", learner="linear")   # the preset's override is dropped
        assert only_linear.learners == ["linear"] and only_linear.learner_config == {}
    finally:
        LEARNERS.unregister("zz_ssl")


def test_slurm_without_sbatch_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError, match=r"sbatch.*not on PATH.*--executor local"):
        run_sweep(small_sweep(), tmp_path / "r", Resources(executor="slurm"))
    assert not (tmp_path / "r" / "runs").exists()   # refused before planning anything


def test_bad_spec_fails_before_anything_runs(tmp_path):
    with pytest.raises(UserError, match="(?i)budget"):
        run_sweep(small_sweep(budget="10,5000"), tmp_path, Resources(executor="inline"))
    assert not (tmp_path / "runs").exists()


def test_second_sweep_submits_nothing(done_root):
    again = run_sweep(small_sweep(), done_root, Resources(executor="inline"))
    assert again.submitted == 0 and again.plan.counts()["done"] == 8
    dry = run_sweep(small_sweep(seeds="1-3"), done_root, Resources(executor="inline"), dry_run=True)
    assert dry.plan.counts() == {"done": 8, "failed": 0, "crashed": 0, "running": 0, "new": 4}
    assert dry.submitted == 0 and len(dry.plan.to_submit) == 4
    records = [json.loads(p.read_text()) for p in (done_root / "runs").glob("*/record.json")]
    assert len(records) == 8 and all(r["status"] == "ok" for r in records)
    # the claim markers of the inline sweep were released
    assert all(json.loads(p.read_text())["state"] == "finished" for p in (done_root / "runs").glob("*/job.json"))


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_running_crashed_failed_states(done_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(done_root, root)
    plan = plan_sweep(small_sweep().specs(), root)
    runs = {(r.spec.selector, r.spec.budget, r.spec.seed): r for r in plan.runs}
    host = socket.gethostname()
    crashed = runs[("random", 10, 1)].resolved.run_dir
    (crashed / "record.json").unlink()
    (crashed / "running.json").write_text(json.dumps({"pid": _dead_pid(), "host": host, "job_id": None,
                                                       "started": "2020-01-01T00:00:00+00:00"}))
    running = runs[("random", 10, 2)].resolved.run_dir
    (running / "record.json").unlink()
    (running / "running.json").write_text(json.dumps({"pid": os.getpid(), "host": host, "job_id": None,
                                                       "started": "2999-01-01T00:00:00+00:00"}))
    failed = runs[("random", 20, 1)].resolved.run_dir
    record = json.loads((failed / "record.json").read_text())
    record.update(status="failed", error="RuntimeError: out of luck\nsecond line")
    (failed / "record.json").write_text(json.dumps(record))

    plan = plan_sweep(small_sweep().specs(), root)
    assert plan.counts() == {"done": 5, "failed": 1, "crashed": 1, "running": 1, "new": 0}
    assert {r.key for r in plan.to_submit} == {crashed.name}
    retry = plan_sweep(small_sweep().specs(), root, retry_failed=True)
    assert {r.key for r in retry.to_submit} == {crashed.name, failed.name}

    text = summarize(scan_states(root))
    assert text.startswith("8 runs: 5 done, 1 failed, 1 crashed, 1 running")
    assert "RuntimeError: out of luck" in text and "second line" not in text
    assert "[crashed] digits | random | linear | m=10 | seed=1" in text and "ended without writing a record" in text
    assert f"log: {failed / 'record.json'}" in text

    result = run_sweep(small_sweep(), root, Resources(executor="inline"), retry_failed=True)
    assert result.submitted == 2
    assert result.final_counts == {"done": 7, "failed": 0, "crashed": 0, "running": 1, "new": 0}


def test_local_chunks_keep_selection_groups(done_root):
    plan = plan_sweep(small_sweep(learner="linear,knn").specs(), done_root)
    work = [w for w in plan_stages(plan, Resources(executor="local", max_parallel=2)) if w.stage == "run"]
    assert len(work) == 1 and len(work[0].specs) == 8            # the 8 knn runs
    chunks = chunk_specs(work[0], Resources(executor="local", max_parallel=2))
    assert len(chunks) == 2 and sorted(len(c) for c in chunks) == [4, 4]
    slurm_work = plan_stages(plan, Resources(executor="slurm"))
    assert [w.stage for w in slurm_work] == ["run"]               # features and selections are cached


@pytest.mark.slow
def test_two_sweeps_sharing_a_root(tmp_path):
    """Two sweeps at once on one root, overlapping grids: no run is computed twice, no record is
    corrupt, and together they finish every run."""
    env = dict(os.environ, CI="true", PYTHONPATH=str(REPO))
    base = [sys.executable, "cli.py", "sweep", "--dataset", "digits", "--learner", "linear", "--budget", "10,20",
            "--seeds", "1-3", "--executor", "inline", "--no-leaderboard", "--results-root", str(tmp_path)]
    first = subprocess.Popen(base + ["--selector", "random,usl"], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    second = subprocess.Popen(base + ["--selector", "usl,stratified"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              text=True)
    outputs = [first.communicate(timeout=240)[0], second.communicate(timeout=240)[0]]
    assert first.returncode == 0 and second.returncode == 0, outputs
    records = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/record.json")]
    assert len(records) == 18 and all(r["status"] == "ok" for r in records)
    assert len({r["key"] for r in records}) == 18

    ran = sum(int(re.search(r"to run: (\d+)", out).group(1)) for out in outputs)
    assert ran == 18, outputs      # the 6 shared usl runs were run by one sweep only
    assert not list((tmp_path / "runs").glob("*/.*.tmp"))


def test_stage_job_requeues_itself():
    """On timeout or preemption submitit calls checkpoint(): the same job is resubmitted, and it
    skips what is done (records, cached selections) when it starts again."""
    from submitit.helpers import DelayedSubmission

    from uslbench.harness.jobs import StageJob

    job = StageJob("run", [{"dataset": "digits"}], "/tmp/x", "cpu")
    resubmission = job.checkpoint()
    assert isinstance(resubmission, DelayedSubmission) and resubmission.function is job


@pytest.mark.slow
def test_local_executor_runs_jobs_from_this_checkout(done_root, tmp_path):
    root = tmp_path / "local"
    shutil.copytree(done_root / "cache", root / "cache")
    resources = Resources(executor="local", max_parallel=2, time_min=5)
    result = run_sweep(small_sweep(learner="knn"), root, resources)
    assert result.submitted == 8 and result.final_counts["done"] == 8 and len(result.job_ids) == 2
    markers = [json.loads(p.read_text()) for p in (root / "runs").glob("*/job.json")]
    assert {m["executor"] for m in markers} == {"local"} and {m["state"] for m in markers} == {"finished"}
    assert len({m["job_id"] for m in markers}) == 2 and all(Path(m["stderr"]).exists() for m in markers)
    records = [json.loads(p.read_text()) for p in (root / "runs").glob("*/record.json")]
    assert all(r["metrics"]["top1"] > 20 for r in records)
    assert run_sweep(small_sweep(learner="knn"), root, resources).submitted == 0


def test_resolved_run_is_a_picklable_value_and_the_loader_is_passed_in(tmp_path):
    import pickle

    from uslbench.datasets import DatasetLoader
    from uslbench.harness.pipeline import ResolvedRun, prepare
    from uslbench.harness.spec import RunSpec

    calls = []

    class CountingLoader(DatasetLoader):
        def __call__(self, name, data_root=None, **overrides):
            calls.append(name)
            return super().__call__(name, data_root=data_root, **overrides)

    loader = CountingLoader(memo=True)
    specs = [RunSpec(dataset="digits", selector="usl", learner="linear", budget="20", seed=seed) for seed in (1, 2)]
    first, second = (prepare(spec, tmp_path, loader=loader) for spec in specs)
    assert calls == ["digits", "digits"] and first.dataset is second.dataset  # loaded once, through the loader
    resolved = first.resolved
    assert isinstance(resolved, ResolvedRun) and resolved.budget == 20 and specs[0].budget == 20
    assert pickle.loads(pickle.dumps(resolved)) == resolved
    assert set(resolved.features) == {"selection", "learner"}  # usl and the linear probe read the features
    assert {s.encoder for s in resolved.features.values()} == {resolved.encoder_name}
    assert resolved.needs_features and resolved.feature_name("selection") == "features"


def test_planning_builds_each_distinct_encoder_once(monkeypatch, tmp_path):
    """A sweep's planning prepares every spec; an encoder (a timm model with its weights) is built
    once per distinct (name, data set, weights, config), not once per spec."""
    from uslbench.harness import pipeline

    built = []
    real = pipeline.make_encoder

    def counting(name, dataset_name, weights, overrides, download=False):
        built.append((name, dataset_name, tuple(sorted(overrides.items()))))
        return real(name, dataset_name, weights, overrides, download)

    monkeypatch.setattr(pipeline, "make_encoder", counting)
    plan = plan_sweep(small_sweep().specs(), tmp_path)  # 8 specs, one encoder
    assert len(plan.runs) == 8 and built == [("pixels", "digits", ())]
    built.clear()
    specs = build_sweep(dataset="digits", selector="random", learner="linear", budget="10", seeds="1-3",
                        encoder="pixels", encoder_config=("pixels.max_side=16",)).specs() + small_sweep().specs()
    plan_sweep(specs, tmp_path)
    assert len(built) == 2 and {b[2] for b in built} == {(), (("max_side", "16"),)}
