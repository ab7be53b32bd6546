"""Steps per second of an SSL learner on CIFAR-shaped inputs (random 32x32x3 images, 10 classes).

    nice -n 10 python -m uslbench.perf.learners --learner fixmatch --steps 4
    python -m uslbench.perf.learners --device cuda --steps 50 --amp

Runs the real training loop (augmentation on the device, one forward/backward per step, EMA) with
the CIFAR-10 preset (WRN-28-2, batch 64 labeled + 7 x 64 unlabeled unless overridden) and reports
the median time per step after the first (warm-up) step. The images are random, so only the speed
means anything.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from ..catalog import LEARNERS
from ..datasets.base import Dataset, ImageSplit


def measure(learner_name: str = "fixmatch", steps: int = 4, device: str = "cpu", amp: bool = False,
            channels_last: bool = False, threads: int = 0, pool: int = 2048, **overrides) -> dict:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (pool, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(pool) % 10
    dataset = Dataset("cifar_shaped", ImageSplit(labels, images), ImageSplit(labels[:64], images[:64]), 10, 32, 3,
                      (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "pixels", identity={"synthetic": pool})
    config = dict(steps=steps, eval_every=10**9, checkpoint_every=10**9, amp=amp, channels_last=channels_last,
                  threads=threads, **overrides)
    learner = LEARNERS.create(learner_name, dataset="cifar10", **config)
    stamps: list[float] = []
    learner.step_callbacks.append(lambda phase, step: stamps.append(time.perf_counter()))
    labeled = np.arange(0, pool, pool // 40)[:40]
    start = time.perf_counter()
    learner.fit(dataset, labeled, seed=0, device=device, workdir=None)
    per_step = np.diff([start] + stamps)
    steady = per_step[1:] if len(per_step) > 1 else per_step
    seconds = float(np.median(steady))
    cfg = learner.config
    return {"learner": learner_name, "arch": cfg.arch, "device": device, "amp": amp, "channels_last": channels_last,
            "labeled_batch": cfg.labeled_batch, "unlabeled_batch": cfg.labeled_batch * cfg.unlabeled_ratio,
            "steps_timed": len(steady), "first_step_seconds": round(float(per_step[0]), 3),
            "seconds_per_step": round(seconds, 3), "steps_per_second": round(1.0 / seconds, 4),
            "torch_threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learner", default="fixmatch")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    print(json.dumps(measure(args.learner, args.steps, args.device, args.amp, args.channels_last, args.threads)))


if __name__ == "__main__":
    main()
