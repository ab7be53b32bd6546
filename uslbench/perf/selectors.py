"""Selector performance benchmark: seconds and peak resident memory per case.

    python cli.py perf selectors            # every case, table -> results/perf/selectors.md
    python cli.py perf selectors --quick    # the N = 50,000 cases only

Each case runs in its own subprocess (`python -m uslbench.perf.selectors --case NAME`), so the
peak RSS of one case never includes another's; the peak covers the whole child process: the
Python interpreter and imports, the feature matrix (655 MB at ImageNet scale) and the selector.
Features: a seeded mixture of isotropic Gaussians around random unit centres, L2-normalised
(see `gaussian_mixture`).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from ..catalog import SELECTORS
from ..errors import UserError, unknown_name_message
from ..harness.pipeline import git_commit, versions
from ..utils import atomic_write_bytes

IMAGENET_N = 1_281_167


def gaussian_mixture(n: int, d: int = 128, clusters: int = 10, seed: int = 0, spread: float = 0.6,
                     block: int = 262_144) -> np.ndarray:
    """n points: centre c_k (random unit vector, k drawn with Dirichlet(5) weights) plus Gaussian
    noise of total norm about `spread`, then L2-normalised. float32, generated in blocks."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    weights = rng.dirichlet(np.full(clusters, 5.0))
    component = rng.choice(clusters, size=n, p=weights)
    out = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, block):
        stop = min(n, start + block)
        x = centres[component[start:stop]] + (spread / np.sqrt(d)) * rng.standard_normal((stop - start, d), dtype=np.float32)
        out[start:stop] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


@dataclass
class Case:
    name: str
    selector: str
    n: int
    budget: int
    clusters: int
    config: dict[str, Any] = field(default_factory=dict)
    target_seconds: float | None = None
    target_gb: float | None = None
    d: int = 128
    quick: bool = True
    note: str = ""

    def describe(self) -> str:
        config = ", ".join(f"{k}={v}" for k, v in self.config.items())
        return f"{self.selector} N={self.n:,} d={self.d} m={self.budget}" + (f" ({config})" if config else "")


# probcover: delta = 0.66 covers about 85% of the 10-cluster mixture with 40 balls (measured
# with `python -m uslbench.perf.selectors --calibrate-probcover`).
PROBCOVER_DELTA_85 = 0.66

CASES: list[Case] = [
    Case("usl_cifar10", "usl", 50_000, 40, 10, {"preset": "cifar10"}, 10, 1.5),
    Case("usl_cifar10_one_blob", "usl", 50_000, 40, 1, {"preset": "cifar10"}, None, None,
         note="one Gaussian, no cluster structure: the exact k-NN sums' worst case"),
    Case("usl_cifar100", "usl", 50_000, 400, 100, {"preset": "cifar100"}, 30, 2.0),
    Case("usl_imagenet", "usl", IMAGENET_N, 2_911, 1_000, {"preset": "imagenet_moco"}, 600, 6.0, quick=False),
    Case("typiclust_50k", "typiclust", 50_000, 40, 10, {}, 5, None),
    Case("probcover_50k", "probcover", 50_000, 40, 10, {"delta": PROBCOVER_DELTA_85}, 20, 3.0,
         note="delta fixed for ~85% coverage"),
    Case("probcover_50k_purity", "probcover", 50_000, 40, 10, {}, None, None, note="delta by the purity rule"),
    Case("coreset_50k", "coreset", 50_000, 40, 10, {}, None, None),
    Case("coreset_imagenet", "coreset", IMAGENET_N, 2_911, 1_000, {}, 600, None, quick=False),
    Case("usl_t_head_50k", "usl_t", 50_000, 40, 10, {"mode": "head"}, 300, None),
]


def choose_cases(names: tuple[str, ...] | list[str], quick: bool) -> list[Case]:
    by_name = {case.name: case for case in CASES}
    if names:
        unknown = [name for name in names if name not in by_name]
        if unknown:
            raise UserError(unknown_name_message("perf case", unknown[0], by_name))
        return [by_name[name] for name in names]
    return [case for case in CASES if case.quick or not quick]


def run_case(case: Case, seed: int = 1) -> dict[str, Any]:
    """Generate the features, run the selector once, report seconds and peak RSS (this process)."""
    start = time.perf_counter()
    features = gaussian_mixture(case.n, case.d, case.clusters, seed=0)
    generate_seconds = time.perf_counter() - start
    rss_before_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    selector = SELECTORS.create(case.selector, **case.config)
    start = time.perf_counter()
    selection = selector.select(features, case.budget, seed=seed)
    seconds = time.perf_counter() - start
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    info = {k: v for k, v in selection.info.items() if k != "resolved_config"}
    return {"case": asdict(case), "seconds": seconds, "phases": selection.seconds, "peak_rss_gb": peak_gb,
            "rss_after_features_gb": rss_before_gb, "generate_seconds": generate_seconds, "info": info,
            "status": "ok"}


def run_case_subprocess(case: Case, timeout_seconds: int = 1800) -> dict[str, Any]:
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
               USLBENCH_QUIET="1")
    load_before = os.getloadavg()[0]
    try:
        done = subprocess.run([sys.executable, "-m", "uslbench.perf.selectors", "--case", case.name],
                              capture_output=True, text=True, timeout=timeout_seconds, env=env, cwd=root)
    except subprocess.TimeoutExpired:
        return {"case": asdict(case), "status": f"timed out after {timeout_seconds} s", "load_before": load_before}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"case": asdict(case), "status": f"failed: {tail[0]}", "load_before": load_before}
    result = json.loads(lines[-1])
    result.update(load_before=load_before, load_after=os.getloadavg()[0])
    return result


def _verdict(value: float | None, target: float | None) -> str:
    if value is None or target is None:
        return ""
    return "yes" if value <= target else "NO"


def result_line(result: dict[str, Any]) -> str:
    if result.get("status") != "ok":
        return f"{result['case']['name']}: {result.get('status')}"
    return (f"{result['case']['name']}: {result['seconds']:.1f} s, peak RSS {result['peak_rss_gb']:.2f} GB "
            f"(phases: {', '.join(f'{k} {v:.1f}' for k, v in result['phases'].items())})")


def _diagnostics(info: dict[str, Any]) -> str:
    keys = ("knn_index", "clusters_nonempty", "coverage", "delta", "edges", "picks_by_farthest_first",
            "clusters_used", "covering_radius", "filled_from_empty_clusters", "steps")
    parts = []
    for key in keys:
        if key in info:
            value = info[key]
            parts.append(f"{key} {value:.3g}" if isinstance(value, float) else f"{key} {value}")
    return "; ".join(parts)


def write_table(results: list[dict[str, Any]], output: str | os.PathLike) -> Path:
    rows = []
    for r in results:
        case = r["case"]
        target = " / ".join(t for t in (f"<= {case['target_seconds']:g} s" if case.get("target_seconds") else "",
                                        f"<= {case['target_gb']:g} GB" if case.get("target_gb") else "") if t)
        if r.get("status") != "ok":
            rows.append([case["name"], case["selector"], f"{case['n']:,}", case["budget"], r.get("status"), "", target,
                         "", "", ""])
            continue
        meets = [v for v in (_verdict(r["seconds"], case.get("target_seconds")),
                             _verdict(r["peak_rss_gb"], case.get("target_gb"))) if v]
        config = ", ".join(f"{k}={v}" for k, v in case["config"].items())
        rows.append([case["name"], case["selector"] + (f" ({config})" if config else ""), f"{case['n']:,}",
                     case["budget"], f"{r['seconds']:.1f}", f"{r['peak_rss_gb']:.2f}", target,
                     ("NO" if "NO" in meets else "yes") if meets else "-",
                     ", ".join(f"{k} {v:.1f}" for k, v in r["phases"].items()),
                     _diagnostics(r.get("info", {})) + (f" ({case['note']})" if case.get("note") else "")])
    table = tabulate(rows, headers=["case", "selector", "N", "m", "seconds", "peak RSS GB", "target", "met",
                                    "phases (s)", "label-free diagnostics"], tablefmt="github")
    versions_line = ", ".join(f"{k} {v}" for k, v in versions().items())
    loads = [f"{r['case']['name']} {r.get('load_before', float('nan')):.1f}" for r in results]
    text = "\n".join([
        "# Selector performance",
        "",
        "Written by `python cli.py perf selectors`. Features: seeded L2-normalised Gaussian mixtures, d = 128 "
        "(10 components at m = 40, 100 at m = 400, 1,000 at ImageNet scale). seconds: the `select` call "
        "(features already in memory); peak RSS: the case's whole subprocess (interpreter, imports, the "
        "feature matrix, the selector). Seed 1.",
        "",
        table,
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; {versions_line}; "
        f"commit {git_commit()}; {time.strftime('%Y-%m-%d %H:%M %Z')}.",
        f"1-minute load average when each case started (other processes share this machine): {', '.join(loads)}.",
        "",
    ])
    path = Path(output)
    atomic_write_bytes(path, text.encode())
    return path


def calibrate_probcover(deltas: list[float], budget: int = 40) -> None:
    features = gaussian_mixture(50_000, 128, 10, seed=0)
    for delta in deltas:
        selection = SELECTORS.create("probcover", delta=delta).select(features, budget, seed=1)
        print(f"delta {delta}: coverage {selection.info['coverage']:.3f}, edges {selection.info['edges']:,}, "
              f"{selection.total_seconds:.1f} s", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", help="run one case and print its result as JSON")
    parser.add_argument("--calibrate-probcover", nargs="*", type=float, help="coverage at these deltas")
    args = parser.parse_args(argv)
    if args.calibrate_probcover is not None:
        calibrate_probcover(args.calibrate_probcover or [0.5, 0.6, 0.65, 0.7, 0.75])
        return
    case = {c.name: c for c in CASES}[args.case]
    print(json.dumps(run_case(case), default=float))


if __name__ == "__main__":
    main()
