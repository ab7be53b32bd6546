"""The prepared device check behind `scripts/gpu_check.sh` (issue 15): one part per process, each
writing `<out>/<part>.json`, then `table` turns them into `<out>/gpu_check.md`.

    python -m uslbench.gpu_check device    --out results/gpu_check
    python -m uslbench.gpu_check density   --out results/gpu_check      # (b) exact k-NN sums, GPU vs CPU
    python -m uslbench.gpu_check fixmatch  --out results/gpu_check      # (c) FixMatch steps/s, AMP
    python -m uslbench.gpu_check selection --out results/gpu_check      # (a) USL at ImageNet scale
    python -m uslbench.gpu_check table     --out results/gpu_check

Sizes (full): (a) 1.28M x 128 seeded Gaussian-mixture features, USL with the `imagenet_moco`
preset, m = 2,911, on the GPU (`--device cuda`) and on the CPU path of the same machine; (b) the
exact k-NN sums of the USL density, 50,000 x 128, k = 400 (the CIFAR-10 preset), the torch kernel
on the GPU against the NumPy/BLAS path, with the largest relative difference of the sums; (c)
FixMatch, WRN-28-2, batch 64 labeled + 448 unlabeled, bf16 autocast + channels-last (and a shorter
float32 run beside it), on CIFAR-10 built from the shared JPEG copy (build_cifar10.py).
`--cpu-smoke` runs every part at tiny sizes on whatever device is there (the CPU here), with a
tiny CIFAR-10 written in torchvision's format, so a test runs all of this code in seconds; only
the CUDA calls themselves are left to a GPU machine.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PARTS = ("device", "density", "fixmatch", "selection")
DENSITY_RTOL = 1e-5  # sums of float32 distances: equal to this relative tolerance


@dataclass(frozen=True)
class Sizes:
    selection_n: int = 1_280_000
    selection_d: int = 128
    selection_budget: int = 2911
    selection_centres: int = 1000
    selection_exact_max: int = 200_000   # the USL default: IVF k-NN above it, as at ImageNet scale
    density_n: int = 50_000
    density_d: int = 128
    density_k: int = 400
    fixmatch_steps: int = 100           # timed after one warm-up step
    fixmatch_fp32_steps: int = 40
    labeled_batch: int = 64
    unlabeled_ratio: int = 7


FULL = Sizes()
SMOKE = Sizes(selection_n=3000, selection_d=16, selection_budget=30, selection_centres=40, selection_exact_max=1000,
              density_n=1500, density_d=16, density_k=20, fixmatch_steps=1, fixmatch_fp32_steps=0,
              labeled_batch=4, unlabeled_ratio=1)


def _load_all() -> None:
    from . import catalog  # noqa: F401  (importing registers every entry)


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def mixture(n: int, d: int, centres: int, seed: int, chunk: int = 262_144) -> np.ndarray:
    """Seeded, L2-normalised Gaussian-mixture features, float32 (n, d), made in chunks."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((centres, d)).astype(np.float32) * 2.0
    out = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        x = means[rng.integers(0, centres, stop - start)] + rng.standard_normal((stop - start, d), dtype=np.float32)
        out[start:stop] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def write_json(out: Path, part: str, data: dict) -> None:
    """Written after every measurement, so a part cut short by its timeout keeps what it had."""
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".{part}.json.tmp"
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    os.replace(tmp, out / f"{part}.json")


# ---------------------------------------------------------------- the parts

def part_device(out: Path, smoke: bool) -> dict:
    import faiss
    import torch

    from .selectors.toolkit import faiss_gpu_count

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
                            "faiss": getattr(faiss, "__version__", "?"), "faiss_gpus": faiss_gpu_count(),
                            "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
                            "smoke": smoke}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        free, total = torch.cuda.mem_get_info(0)
        info.update(gpu=props.name, gpu_memory_gib=round(total / 2**30, 1), gpu_free_gib=round(free / 2**30, 1),
                    capability=f"{props.major}.{props.minor}", bf16=torch.cuda.is_bf16_supported())
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        if smi.returncode == 0:
            info["nvidia_smi"] = smi.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    write_json(out, "device", info)
    return info


def part_density(out: Path, smoke: bool) -> dict:
    """(b): the exact k-NN sums, torch kernel on the GPU vs the NumPy/BLAS path (all CPU workers)."""
    from .selectors.knn_sums import knn_sq_dist_sums
    from .selectors.toolkit import default_workers
    from .selectors.torch_exact import knn_sq_dist_sums_torch

    sizes = SMOKE if smoke else FULL
    device = "cuda" if cuda_available() else ("cpu" if smoke else None)
    result: dict[str, Any] = {"n": sizes.density_n, "d": sizes.density_d, "k": sizes.density_k, "device": device}
    if device is None:
        result["error"] = "no CUDA GPU visible"
        write_json(out, "density", result)
        return result
    x = mixture(sizes.density_n, sizes.density_d, 100, seed=1)
    knn_sq_dist_sums_torch(x[:2000], min(sizes.density_k, 50), device=device)  # warm-up: CUDA context, kernels
    stats: dict = {}
    start = time.perf_counter()
    accelerated = knn_sq_dist_sums_torch(x, sizes.density_k, device=device, stats=stats)
    result.update(accelerated_seconds=round(time.perf_counter() - start, 3), tile_rows=stats["tile_rows"])
    write_json(out, "density", result)
    start = time.perf_counter()
    reference = knn_sq_dist_sums(x, sizes.density_k)
    result.update(cpu_seconds=round(time.perf_counter() - start, 3), cpu_workers=default_workers())
    relative = np.abs(accelerated - reference) / np.maximum(np.abs(reference), 1e-12)
    result.update(max_relative_difference=float(relative.max()), equal=bool(relative.max() <= DENSITY_RTOL),
                  speedup=round(result["cpu_seconds"] / max(result["accelerated_seconds"], 1e-9), 2))
    write_json(out, "density", result)
    return result


def part_selection(out: Path, smoke: bool) -> dict:
    """(a): USL with the ImageNet preset, on the GPU (faiss GPU API + torch) and on the CPU path."""
    from .selectors.base import SelectionContext

    _load_all()
    from .registry import SELECTORS

    sizes = SMOKE if smoke else FULL
    device = "cuda" if cuda_available() else ("cpu" if smoke else None)
    result: dict[str, Any] = {"n": sizes.selection_n, "d": sizes.selection_d, "budget": sizes.selection_budget,
                              "preset": "imagenet_moco", "device": device}
    if device is None:
        result["error"] = "no CUDA GPU visible"
        write_json(out, "selection", result)
        return result
    start = time.perf_counter()
    x = mixture(sizes.selection_n, sizes.selection_d, sizes.selection_centres, seed=2)
    result["features_seconds"] = round(time.perf_counter() - start, 2)

    def select(features: np.ndarray, budget: int, on: str):
        selector = SELECTORS.create("usl", preset="imagenet_moco", knn_exact_max=sizes.selection_exact_max)
        return selector.select(features, budget, seed=1, context=SelectionContext(device=on))

    select(x[: max(2000, sizes.selection_n // 256)], 20, device)  # warm-up: CUDA context, faiss GPU resources
    runs = {}
    for label, on in (("accelerated", device), ("cpu", "cpu")):
        start = time.perf_counter()
        selection = select(x, sizes.selection_budget, on)
        runs[label] = selection
        result[label] = {"seconds": round(time.perf_counter() - start, 2),
                         "phases": {k: round(v, 2) for k, v in selection.seconds.items()},
                         **{k: selection.info[k] for k in ("selection_device", "faiss_gpu", "gpu_ops", "knn_index")}}
        write_json(out, "selection", result)
    shared = len(np.intersect1d(runs["accelerated"].indices, runs["cpu"].indices))
    result.update(shared_picks=int(shared),
                  speedup=round(result["cpu"]["seconds"] / max(result["accelerated"]["seconds"], 1e-9), 2))
    write_json(out, "selection", result)
    return result


def part_fixmatch(out: Path, smoke: bool, cifar_root: str | None, shared_cifar: str | None) -> dict:
    """(c): FixMatch steps/s on CIFAR-10, WRN-28-2, AMP (bf16 autocast) + channels-last on a GPU."""
    from .datasets import load_dataset

    _load_all()
    from .registry import LEARNERS

    sizes = SMOKE if smoke else FULL
    cuda = cuda_available()
    device = "cuda" if cuda else ("cpu" if smoke else None)
    result: dict[str, Any] = {"arch": "wrn28_2", "labeled_batch": sizes.labeled_batch,
                              "unlabeled_batch": sizes.labeled_batch * sizes.unlabeled_ratio, "device": device}
    if device is None:
        result["error"] = "no CUDA GPU visible"
        write_json(out, "fixmatch", result)
        return result
    start = time.perf_counter()
    root = Path(cifar_root) if cifar_root else out / "cifar10"
    if not (root / "cifar-10-batches-py" / "test_batch").is_file():
        if smoke:
            from .datasets.testing import write_cifar

            write_cifar(root, per_class_train=20, per_class_test=5)
        else:
            build = find_build_script(shared_cifar)
            subprocess.run([sys.executable, str(build), str(root)], check=True)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the JPEG rebuild's checksums differ from the official archive
        dataset = load_dataset("cifar10", data_root=str(root))
    result.update(data_seconds=round(time.perf_counter() - start, 1), pool=len(dataset.train))
    labels = np.asarray(dataset.train.labels)
    labeled = np.concatenate([np.flatnonzero(labels == c)[:4] for c in range(10)])  # 40 labels, 4 per class
    write_json(out, "fixmatch", result)
    for label, amp, steps in (("amp", cuda, sizes.fixmatch_steps), ("fp32", False, sizes.fixmatch_fp32_steps)):
        if steps < 1:
            continue
        result[label] = measure_steps(LEARNERS, dataset, labeled, device, steps + 1, amp, sizes)
        write_json(out, "fixmatch", result)
    return result


def find_build_script(shared_cifar: str | None) -> Path:
    candidates = [Path(shared_cifar)] if shared_cifar else [Path("../shared/data/cifar10"), Path("shared/data/cifar10")]
    for folder in candidates:
        if (folder / "build_cifar10.py").is_file():
            return folder / "build_cifar10.py"
    raise SystemExit(f"build_cifar10.py not found in {', '.join(map(str, candidates))}; pass --shared-cifar DIR "
                     "or --cifar-root DIR (a folder with cifar-10-batches-py/)")


def measure_steps(learners, dataset, labeled: np.ndarray, device: str, steps: int, amp: bool, sizes: Sizes) -> dict:
    """Median seconds per step after the first (warm-up) step, from the loop's step callbacks."""
    cuda = device.startswith("cuda")
    learner = learners.create("fixmatch", dataset="cifar10", steps=steps, eval_every=10**9, checkpoint_every=10**9,
                              amp=amp, channels_last=cuda, labeled_batch=sizes.labeled_batch,
                              unlabeled_ratio=sizes.unlabeled_ratio)
    stamps: list[float] = []

    def stamp(phase: str, step: int) -> None:
        if cuda:
            import torch

            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    learner.step_callbacks.append(stamp)
    start = time.perf_counter()
    metrics = learner.fit(dataset, labeled, seed=0, device=device, workdir=None)
    per_step = np.diff([start] + stamps)
    steady = per_step[1:] if len(per_step) > 1 else per_step
    seconds = float(np.median(steady))
    return {"amp": amp, "precision": metrics.get("precision", "bf16" if amp else "fp32"), "channels_last": cuda,
            "steps_timed": int(len(steady)),
            "first_step_seconds": round(float(per_step[0]), 3), "seconds_per_step": round(seconds, 4),
            "steps_per_second": round(1.0 / seconds, 2), "final_top1": round(float(metrics["top1"]), 2)}


# ---------------------------------------------------------------- the table

def table(out: Path) -> str:
    """Markdown: the device, then one row per check (a, b, c) from the parts' JSON files."""
    def load(part: str) -> dict | None:
        path = out / f"{part}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    missing = "no result (timed out or failed: see gpu_check.log, part {})"
    device = load("device") or {}
    lines = ["# GPU check (issue 15)", ""]
    if device:
        gpu = device.get("gpu") or "no CUDA GPU"
        lines += [f"Device: {gpu}" + (f" ({device['gpu_memory_gib']} GiB, compute {device['capability']})"
                                       if device.get("gpu") else "")
                  + f"; {device.get('cpus')} CPUs; torch {device.get('torch')} (CUDA {device.get('torch_cuda')}); "
                  f"faiss {device.get('faiss')} ({device.get('faiss_gpus')} GPUs)"
                  + ("; CPU SMOKE RUN (tiny sizes, no GPU figures)" if device.get("smoke") else ""), ""]
    rows = []
    sel = load("selection")
    if sel is None:
        rows.append(["(a) USL selection, ImageNet preset", "-", "-", "-", missing.format("selection")])
    elif "error" in sel:
        rows.append([f"(a) USL selection, {sel['n']:,} x {sel['d']}, ImageNet preset", "-", "-", "-", sel["error"]])
    else:
        acc, cpu = sel.get("accelerated"), sel.get("cpu")
        rows.append([f"(a) USL selection, {sel['n']:,} x {sel['d']}, ImageNet preset, m = {sel['budget']:,}",
                     _seconds(acc) + (f" on {acc['selection_device']}, faiss GPU {acc['faiss_gpu']}" if acc else ""),
                     _seconds(cpu), f"{sel['speedup']}x" if "speedup" in sel else "-",
                     f"{sel['shared_picks']:,} / {sel['budget']:,} picks shared" if "shared_picks" in sel
                     else missing.format("selection")])
    dens = load("density")
    if dens is None:
        rows.append(["(b) exact k-NN density", "-", "-", "-", missing.format("density")])
    elif "error" in dens:
        rows.append([f"(b) exact k-NN density, {dens['n']:,} x {dens['d']}, k = {dens['k']}", "-", "-", "-",
                     dens["error"]])
    else:
        agreement = (f"sums {'equal' if dens['equal'] else 'DIFFER'}: max relative difference "
                     f"{dens['max_relative_difference']:.1e} (tolerance {DENSITY_RTOL:.0e})"
                     if "equal" in dens else missing.format("density"))
        rows.append([f"(b) exact k-NN density, {dens['n']:,} x {dens['d']}, k = {dens['k']}",
                     f"{dens['accelerated_seconds']} s on {dens['device']}",
                     f"{dens['cpu_seconds']} s ({dens['cpu_workers']} workers)" if "cpu_seconds" in dens else "-",
                     f"{dens['speedup']}x" if "speedup" in dens else "-", agreement])
    fm = load("fixmatch")
    if fm is None or ("error" not in fm and "amp" not in fm and "fp32" not in fm):
        rows.append(["(c) FixMatch WRN-28-2", "-", "-", "-", missing.format("fixmatch")])
    elif "error" in fm:
        rows.append(["(c) FixMatch WRN-28-2", "-", "-", "-", fm["error"]])
    else:
        main = fm.get("amp") or fm.get("fp32")
        other = fm.get("fp32") if fm.get("amp") else None
        rows.append([f"(c) FixMatch WRN-28-2, batch {fm['labeled_batch']} + {fm['unlabeled_batch']}, CIFAR-10 "
                     f"({fm['pool']:,} images)",
                     f"{main['steps_per_second']} steps/s on {fm['device']} ("
                     + (f"{main.get('precision', 'bf16')} autocast + channels-last" if main["amp"] else "float32") + ")",
                     "-", "-",
                     (f"float32: {other['steps_per_second']} steps/s; " if other else "")
                     + f"{main['steps_timed']} steps timed, first step {main['first_step_seconds']} s"])
    from tabulate import tabulate

    lines.append(tabulate(rows, headers=["check", "GPU", "CPU path, same machine", "speed-up", "agreement / notes"],
                          tablefmt="github"))
    text = "\n".join(lines) + "\n"
    (out / "gpu_check.md").write_text(text)
    return text


def _seconds(run: dict | None) -> str:
    if not run:
        return "-"
    phases = ", ".join(f"{k} {v}" for k, v in run["phases"].items())
    return f"{run['seconds']} s ({phases})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=(*PARTS, "table"))
    parser.add_argument("--out", default="results/gpu_check", help="folder for the JSON files and the table")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny sizes on whatever device is there")
    parser.add_argument("--cifar-root", default=None, help="a folder holding cifar-10-batches-py/ (else built)")
    parser.add_argument("--shared-cifar", default=None, help="the folder of build_cifar10.py and its JPEG archive")
    args = parser.parse_args(argv)
    os.environ.setdefault("USLBENCH_QUIET", "1")
    out = Path(args.out)
    if args.part == "table":
        print(table(out))
        return 0
    if args.part == "device":
        result = part_device(out, args.cpu_smoke)
    elif args.part == "density":
        result = part_density(out, args.cpu_smoke)
    elif args.part == "selection":
        result = part_selection(out, args.cpu_smoke)
    else:
        result = part_fixmatch(out, args.cpu_smoke, args.cifar_root, args.shared_cifar)
    print(json.dumps({args.part: result}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
