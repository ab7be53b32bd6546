"""`run --selector usl --learner linear --encoder simclr --encoder-weights W` end to end on fixtures in
each format (CIFAR folder, BloodMNIST .npz, ImageFolder tree, .npz), with random-init weights."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from uslbench.harness.pipeline import run_spec
from uslbench.harness.spec import RunSpec
from uslbench.cli import main
from uslbench.datasets.testing import write_cifar, write_image_folder, write_medmnist, write_npz
from uslbench.nets.contrastive import ContrastiveNet


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "random_simclr.pt"
    torch.save(ContrastiveNet("resnet18_cifar", [512, 512, 128]).export(), path)
    return path


@pytest.mark.slow
def test_cli_run_on_cifar_folder(tmp_path, weights):
    root = write_cifar(tmp_path / "data", "cifar10", per_class_train=3, per_class_test=2)
    args = ["run", "--selector", "usl", "--learner", "linear", "--dataset", "cifar10", "--data-root", str(root),
            "--encoder", "simclr", "--encoder-weights", str(weights), "--budget", "10",
            "--results-root", str(tmp_path / "results"), "--device", "cpu"]
    runner = CliRunner()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = runner.invoke(main, args, env={"CI": "true"})
        assert first.exit_code == 0, first.output
        second = runner.invoke(main, args, env={"CI": "true"})
    assert "cached" in second.output
    record = json.loads(next((tmp_path / "results" / "runs").glob("*/record.json")).read_text())
    assert record["status"] == "ok" and record["dataset_summary"] == {"pool_size": 30, "num_classes": 10,
                                                                      "test_size": 20}
    indices = record["selection"]["indices"]
    assert len(indices) == len(set(indices)) == 10 and max(indices) < 30
    # class colours survive loading, preprocessing and random-init features: far above chance (10 %)
    assert record["metrics"]["n_test"] == 20 and record["metrics"]["top1"] >= 25.0
    assert record["resolved"]["encoder"]["weights"] and str(weights) not in json.dumps(record["resolved"])
    meta = list((tmp_path / "results" / "cache" / "features" / "cifar10").glob("simclr-*.json"))
    assert len(meta) == 1 and np.load(meta[0].with_suffix(".npy")).shape == (30, 128)


@pytest.mark.filterwarnings("ignore:.*differ from the official archive")
def test_cli_run_without_weights_names_pretrain(tmp_path):
    root = write_cifar(tmp_path / "data", "cifar10", per_class_train=2, per_class_test=1)
    result = CliRunner().invoke(main, ["run", "--selector", "usl", "--learner", "linear", "--dataset", "cifar10",
                                       "--data-root", str(root), "--budget", "10",
                                       "--results-root", str(tmp_path / "results")])
    assert result.exit_code == 2
    assert "python cli.py pretrain --encoder simclr --dataset cifar10" in result.output
    assert "--encoder-weights PATH" in result.output
    assert not (tmp_path / "results" / "cache" / "features").exists()   # nothing computed


@pytest.mark.parametrize("source", ["bloodmnist", "folder", "npz"])
def test_run_spec_on_other_formats(tmp_path, weights, source):
    if source == "bloodmnist":
        spec = RunSpec(dataset="bloodmnist", data_root=str(write_medmnist(tmp_path, per_class_train=3,
                                                                          per_class_test=2)), selector="usl",
                       learner="linear", budget=10)
        pool, test, floor = 24, 16, 25.0       # 8 classes: chance 12.5 %
    elif source == "folder":
        root = write_image_folder(tmp_path / "imgs", per_class_train=5, per_class_test=2, num_classes=3, size=12)
        spec = RunSpec(dataset=f"folder:{root}", selector="usl", learner="linear", budget=6)
        pool, test, floor = 15, 6, 50.0        # 3 classes: chance 33 %
    else:
        path = write_npz(tmp_path / "d.npz", per_class_train=5, per_class_test=2, num_classes=3, size=12)
        spec = RunSpec(dataset=f"npz:{path}", selector="usl", learner="linear", budget=6)
        pool, test, floor = 15, 6, 50.0
    spec.encoder, spec.encoder_weights = "simclr", str(weights)
    outcome = run_spec(spec, tmp_path / "results")
    record = outcome.record
    assert record["status"] == "ok" and record["dataset_summary"]["pool_size"] == pool
    assert record["metrics"]["n_test"] == test and record["metrics"]["top1"] >= floor
    indices = record["selection"]["indices"]
    assert len(set(indices)) == spec.budget and max(indices) < pool
    assert str(tmp_path) not in json.dumps(record["resolved"]["dataset"])
