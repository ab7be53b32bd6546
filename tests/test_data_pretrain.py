"""SimCLR pretraining: the NT-Xent value, a few steps lower the loss, resume, and the CLI command
whose weights `run` then finds by default."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from uslbench.harness.pipeline import run_spec
from uslbench.harness.spec import RunSpec
from uslbench.cli import main
from uslbench.datasets import load_dataset
from uslbench.datasets.testing import write_npz
from uslbench.encoders.checkpoints import load_file, map_state_dict
from uslbench.encoders.pretrain import PretrainOptions, pretrain_simclr
from uslbench.nets.contrastive import ContrastiveNet
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


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    """16 images of 8 x 8 px, each its own smooth 2 x 2 colour layout: what tells an image from the
    others survives crops, flips and colour jitter, so contrastive training has something to learn
    (the class-colour + pixel-noise images of `tiny` have almost nothing: views of one image share
    only the class colour, and a few steps move their loss by a few hundredths)."""
    coarse = torch.from_numpy(np.random.default_rng(0).integers(0, 256, size=(16, 3, 2, 2)).astype(np.float32))
    images = torch.nn.functional.interpolate(coarse, size=(8, 8), mode="bilinear", align_corners=False)
    images = images.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    path = write_npz(tmp_path_factory.mktemp("npz") / "layouts.npz", size=8, num_classes=2, x_train=images,
                     y_train=np.arange(16) % 2)
    return load_dataset(f"npz:{path}")


def _fixed_views_loss(net: torch.nn.Module, dataset, draws: int = 8) -> float:
    """NT-Xent of `net` on the same 8 seeded pairs of views of the train split, averaged."""
    augment = simclr_transform(8, dataset.mean, dataset.std)
    torch.manual_seed(123)
    images = [dataset.train.image(i).convert("RGB") for i in range(len(dataset.train))]
    net.train()  # batch statistics, as in training
    losses = []
    with torch.no_grad():
        for _ in range(draws):
            v1 = torch.stack([augment(im) for im in images])
            v2 = torch.stack([augment(im) for im in images])
            losses.append(nt_xent(net(v1), net(v2), 0.1).item())
    return float(np.mean(losses))


def _weights(path):
    return map_state_dict(load_file(path))


@pytest.mark.slow
def test_training_lowers_the_loss_and_a_resume_continues_exactly(layouts, tmp_path):
    dataset = layouts
    options = dict(epochs=6, batch_size=16, lr=0.5, num_workers=0, seed=0)
    full = pretrain_simclr(dataset, tmp_path / "full" / "simclr.pt", dataset.mean, dataset.std,
                           PretrainOptions(**options), echo=lambda m: None)
    # interrupted after 2 of 6 epochs (one step each), then resumed
    weights = tmp_path / "resumed" / "simclr.pt"
    first = pretrain_simclr(dataset, weights, dataset.mean, dataset.std, PretrainOptions(max_steps=2, **options),
                            echo=lambda m: None)
    assert first.epochs_done == 2 and (tmp_path / "resumed" / "simclr.resume.pt").is_file()
    messages = []
    resumed = pretrain_simclr(dataset, weights, dataset.mean, dataset.std, PretrainOptions(**options),
                              resume=True, echo=messages.append)
    assert messages[0] == f"resuming from epoch 2 of 6 ({tmp_path / 'resumed' / 'simclr.resume.pt'})"
    # the resumed run is the uninterrupted one: same losses, same weights, bit for bit
    assert resumed.resumed_from == 2 and resumed.epochs_done == 6 and resumed.losses == full.losses
    a, b = _weights(full.weights_path).state_dict, _weights(weights).state_dict
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    # training learns: the loss on fixed views is below the initial network's, and the epoch
    # losses fall (the last two epochs against the first)
    mapped = _weights(full.weights_path)
    trained = ContrastiveNet("resnet18_cifar", mapped.head_dims, mapped.head_relu)
    trained.load_state_dict(mapped.state_dict, strict=False)
    torch.manual_seed(seed_from("simclr-pretrain", 0))  # the initialisation pretrain starts from
    initial = ContrastiveNet("resnet18_cifar", [512, 512, 128], True)
    assert _fixed_views_loss(trained, dataset) < _fixed_views_loss(initial, dataset)
    assert np.isfinite(full.losses).all() and np.mean(full.losses[-2:]) < full.losses[0], full.losses


def test_a_resume_inside_an_epoch_continues_exactly(layouts, tmp_path):
    """Interrupts (SIGINT, SIGTERM) checkpoint mid-epoch: the resumed run draws the same batches."""
    dataset = layouts
    options = dict(epochs=1, batch_size=8, lr=0.5, num_workers=0, seed=3)  # 2 steps per epoch
    full = pretrain_simclr(dataset, tmp_path / "full" / "simclr.pt", dataset.mean, dataset.std,
                           PretrainOptions(**options), echo=lambda m: None)
    weights = tmp_path / "resumed" / "simclr.pt"
    pretrain_simclr(dataset, weights, dataset.mean, dataset.std, PretrainOptions(max_steps=1, **options),
                    echo=lambda m: None)
    resumed = pretrain_simclr(dataset, weights, dataset.mean, dataset.std, PretrainOptions(**options),
                              resume=True, echo=lambda m: None)
    assert resumed.losses == full.losses and len(full.losses) == 1
    a, b = _weights(full.weights_path).state_dict, _weights(weights).state_dict
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("n, batch_size, workers", [(16, 16, 0), (16, 4, 1), (12, 4, 2), (20, 8, 1)])
def test_epoch_order_is_the_one_of_the_earlier_loader(n, batch_size, workers):
    """The batches of an epoch are those the earlier pretraining loader drew (a DataLoader walked
    under tqdm.auto, which opens and drops one iterator first), so weights pretrained before the
    shared loop come out the same."""
    from tqdm.auto import tqdm

    from uslbench.encoders.pretrain import skip_dropped_iterator

    def generator():
        return torch.Generator().manual_seed(seed_from("simclr-epoch", 0, 1))

    class Indices(torch.utils.data.Dataset):
        def __len__(self):
            return n

        def __getitem__(self, index):
            return index

    earlier = torch.utils.data.DataLoader(Indices(), batch_size=batch_size, shuffle=True, drop_last=True,
                                          num_workers=workers, generator=generator())
    expected = [batch.tolist() for batch in tqdm(earlier, disable=True)]
    skipped = generator()
    skip_dropped_iterator(skipped, n, batch_size, workers)
    now = [batch.tolist() for batch in torch.utils.data.DataLoader(range(n), batch_size=batch_size, shuffle=True,
                                                                   drop_last=True, generator=skipped)]
    assert now == expected and len(now) == n // batch_size


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
