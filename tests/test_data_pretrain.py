"""SimCLR pretraining: the NT-Xent value, a few steps lower the loss, resume, and the CLI command
whose weights `run` then finds by default."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from uslbench.benchmark.pipeline import run_spec
from uslbench.benchmark.spec import RunSpec
from uslbench.cli import main
from uslbench.datasets import load_dataset
from uslbench.datasets.testing import write_npz
from uslbench.encoders.checkpoints import load_file, map_state_dict
from uslbench.encoders.pretrain import PretrainOptions, pretrain_simclr
from uslbench.encoders.torch_base import ContrastiveNet
from uslbench.errors import UserError
from uslbench.training.augment import simclr_transform
from uslbench.training.losses import nt_xent
from uslbench.utils import seed_from


def test_nt_xent_hand_computed():
    z = torch.eye(2)
    # each view: positive similarity 1, two negatives with similarity 0 -> -log(e / (e + 2))
    assert nt_xent(z, z.clone(), temperature=1.0).item() == pytest.approx(math.log((math.e + 2) / math.e), rel=1e-6)
    # temperature 0.5 doubles every logit: -log(e^2 / (e^2 + 2))
    assert nt_xent(z, z.clone(), temperature=0.5).item() == pytest.approx(math.log((math.e ** 2 + 2) / math.e ** 2))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = write_npz(tmp_path_factory.mktemp("npz") / "tiny.npz", per_class_train=8, per_class_test=3,
                     num_classes=2, size=8)
    return path, load_dataset(f"npz:{path}")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _fixed_views_loss(net: torch.nn.Module, dataset) -> float:
    augment = simclr_transform(8, dataset.mean, dataset.std)
    torch.manual_seed(123)
    images = [dataset.train.image(i).convert("RGB") for i in range(len(dataset.train))]
    v1 = torch.stack([augment(im) for im in images])
    v2 = torch.stack([augment(im) for im in images])
    net.train()  # batch statistics, as in training
    with torch.no_grad():
        return nt_xent(net(v1), net(v2), 0.1).item()


@pytest.mark.slow
def test_few_steps_lower_the_loss_and_resume_continues(tiny, tmp_path):
    path, dataset = tiny
    options = dict(epochs=6, batch_size=16, lr=0.5, num_workers=0, seed=0)
    weights = tmp_path / "simclr.pt"
    # interrupted after 2 of 6 epochs (one step each), then resumed
    first = pretrain_simclr(dataset, weights, dataset.mean, dataset.std,
                            PretrainOptions(max_steps=2, **options), echo=lambda m: None)
    assert first.epochs_done == 2 and (tmp_path / "simclr.resume.pt").is_file()
    messages = []
    result = pretrain_simclr(dataset, weights, dataset.mean, dataset.std, PretrainOptions(**options),
                             resume=True, echo=messages.append)
    assert result.resumed_from == 2 and result.epochs_done == 6 and result.losses[:2] == first.losses
    assert any("resuming from epoch 2" in m for m in messages)
    mapped = map_state_dict(load_file(weights))
    trained = ContrastiveNet("resnet18_cifar", mapped.head_dims, mapped.head_relu)
    trained.load_state_dict(mapped.state_dict, strict=False)
    torch.manual_seed(seed_from("simclr-pretrain", 0))  # the initialisation pretrain starts from
    initial = ContrastiveNet("resnet18_cifar", [512, 512, 128], True)
    before, after = _fixed_views_loss(initial, dataset), _fixed_views_loss(trained, dataset)
    assert after < before - 0.05, (before, after)
    assert np.isfinite(result.losses).all()


def test_resume_refuses_other_options(tiny, tmp_path):
    path, dataset = tiny
    pretrain_simclr(dataset, tmp_path / "simclr.pt", dataset.mean, dataset.std,
                    PretrainOptions(epochs=1, batch_size=16, num_workers=0), echo=lambda m: None)
    with pytest.raises(UserError, match="other data or options .*batch_size"):
        pretrain_simclr(dataset, tmp_path / "simclr.pt", dataset.mean, dataset.std,
                        PretrainOptions(epochs=1, batch_size=8, num_workers=0), resume=True, echo=lambda m: None)


@pytest.mark.slow
def test_pretrain_cli_then_run_finds_the_weights(tiny, tmp_path):
    path, _ = tiny
    runner = CliRunner()
    args = ["pretrain", "--encoder", "simclr", "--dataset", f"npz:{path}", "--epochs", "1", "--batch-size", "16",
            "--num-workers", "0", "--results-root", str(tmp_path), "--device", "cpu"]
    result = runner.invoke(main, args, env={"CI": "true"})
    assert result.exit_code == 0, result.output
    written = list((tmp_path / "weights").glob("npz-*/simclr.pt"))
    assert len(written) == 1
    again = runner.invoke(main, args, env={"CI": "true"})
    assert again.exit_code == 2 and "--force" in again.output
    outcome = run_spec(RunSpec(dataset=f"npz:{path}", selector="usl", learner="linear", budget=6, encoder="simclr"),
                       tmp_path)
    assert outcome.record["status"] == "ok" and len(outcome.record["selection"]["indices"]) == 6
    wrong = runner.invoke(main, ["pretrain", "--encoder", "mocov2", "--dataset", f"npz:{path}"])
    assert wrong.exit_code == 2 and "simclr only" in wrong.output
