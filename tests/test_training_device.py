"""The GPU paths of the training code (issue 15 item 3), tested on the CPU: the decisions (precision,
where a split is kept), what a pool sends to the device (checked with the `meta` device: batches go
there, the split stays on the host), file-backed splits read by DataLoader workers giving the same
training as in-memory ones, no host read of the loss per step, the EMA's fused update, USL-T on
the selection's device, and the progress-bar rule. Tests marked `gpu` need a CUDA GPU and are
skipped without one.
"""
from __future__ import annotations

import dataclasses
import io
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from uslbench.catalog import LEARNERS, SELECTORS
from uslbench.datasets import load_dataset
from uslbench.datasets.base import ImageSplit
from uslbench.errors import UserError
from uslbench.training import device as device_module
from uslbench.training import images as images_module
from uslbench.training.device import (DEVICE_SHARE, Precision, is_cuda, place_pool, resolve_precision,
                                      to_device)
from uslbench.training.images import ImagePool, split_tensor
from uslbench.training.loop import EMA, IndexStream, Seeding, TrainLoop, as_floats

CUDA = torch.cuda.is_available()
TINY = {"steps": 6, "labeled_batch": 8, "unlabeled_ratio": 2, "eval_every": 3, "checkpoint_every": 3,
        "eval_batch": 50, "queue_size": 48, "pretrain_steps": 3, "pretrain_batch": 16, "distill_steps": 2,
        "threads": 1}


class ArrayFiles:
    """A lazy loader over an in-memory uint8 (N, H, W, C) array, standing in for image files
    (picklable, so DataLoader workers can use it)."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def __call__(self, index: int) -> Image.Image:
        pixels = self.array[index]
        return Image.fromarray(pixels[..., 0], mode="L") if pixels.shape[-1] == 1 else Image.fromarray(pixels)


def file_backed(split: ImageSplit) -> ImageSplit:
    return ImageSplit(labels=split.labels, loader=ArrayFiles(split.array), length=len(split))


def labeled_set(dataset, per_class: int = 2) -> np.ndarray:
    labels = dataset.train.labels
    return np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(dataset.num_classes)])


def tiny(name: str, **extra) -> dict:
    fields = {f.name for f in LEARNERS.get(name).config_fields()}
    return {k: v for k, v in {**TINY, **extra}.items() if k in fields}


# ---------------------------------------------------------------------------------------------
# precision: decisions


def test_precision_on_the_cpu_is_float32_and_gpu_options_are_refused():
    cpu = resolve_precision("cpu")
    assert cpu == Precision("cpu") and cpu.name == "fp32" and not cpu.channels_last and cpu.scaler() is None
    assert resolve_precision("cpu", amp=False, channels_last=False) == cpu
    x = torch.zeros(2, 3, 4, 4)
    assert cpu.images(x) is x  # no copy, no format change
    with cpu.autocast():
        assert not torch.is_autocast_enabled("cpu")
    for option in ("amp", "channels_last"):
        with pytest.raises(UserError, match=f"Config {option}=true needs a CUDA GPU"):
            resolve_precision("cpu", **{option: True})


@pytest.mark.parametrize("bf16, amp, channels_last, name, scaler, last", [
    (True, None, None, "bf16", False, True),     # the default on a GPU with bf16 (Ampere and later)
    (False, None, None, "fp16", True, True),     # older GPUs: fp16 with loss scaling
    (True, False, None, "fp32", False, True),    # amp=false: float32, still channels-last
    (True, None, False, "bf16", False, False),
    (False, True, True, "fp16", True, True),
])
def test_precision_on_cuda_defaults_to_bf16_or_fp16_with_scaling(bf16, amp, channels_last, name, scaler, last):
    precision = resolve_precision("cuda:1", amp, channels_last, bf16=bf16)
    assert (precision.name, precision.needs_scaler, precision.channels_last) == (name, scaler, last)
    assert precision.device == "cuda:1"


def test_device_words():
    assert is_cuda("cuda") and is_cuda("cuda:3") and is_cuda(torch.device("cuda", 0))
    assert not is_cuda("cpu") and not is_cuda("meta") and not is_cuda("auto")


def test_learner_configs_leave_precision_to_the_device_and_keep_their_run_keys():
    """amp / channels_last default to None (the device decides); the run key writes None as false,
    so the keys of CPU runs stay those made when false was the default."""
    learner = LEARNERS.create("fixmatch", dataset="digits")
    assert learner.config.amp is None and learner.config.channels_last is None
    key = learner.key_config()
    assert key["amp"] is False and key["channels_last"] is False
    assert {k: v for k, v in key.items() if k not in ("amp", "channels_last")} == {
        k: v for k, v in dataclasses.asdict(learner.config).items() if k not in ("amp", "channels_last")}
    cpu = learner.resolved(learner.config, resolve_precision("cpu"))
    assert (cpu.amp, cpu.channels_last) == (False, False)
    gpu = learner.resolved(learner.config, resolve_precision("cuda", bf16=False))
    assert (gpu.amp, gpu.channels_last) == (True, True)
    assert LEARNERS.create("fixmatch", dataset="digits", amp=True).key_config()["amp"] is True


# ---------------------------------------------------------------------------------------------
# placement: decisions and what moves


def test_place_pool_decisions():
    gib = 1 << 30
    assert place_pool(10 * gib, "cpu", False) == "device"         # the CPU's memory is the host's
    assert place_pool(10, "cpu", True) == "files"                 # file-backed: never decoded whole
    assert place_pool(10, "cuda", True, free_bytes=80 * gib) == "files"
    assert place_pool(int(DEVICE_SHARE * 8 * gib), "cuda", False, free_bytes=8 * gib) == "device"
    assert place_pool(int(DEVICE_SHARE * 8 * gib) + 1, "cuda", False, free_bytes=8 * gib) == "host"
    assert place_pool(1, "cuda", False, free_bytes=None) == "host"


def test_to_device_moves_only_the_batch():
    batch = torch.arange(6, dtype=torch.uint8).reshape(2, 3)
    assert to_device(batch, "cpu") is batch
    moved = to_device(batch, "meta")
    assert moved.device.type == "meta" and moved.shape == (2, 3) and moved.dtype == torch.uint8


def test_a_pool_too_big_for_the_gpu_stays_on_the_host(small_digits, monkeypatch):
    """With little free GPU memory the split is kept on the host: no copy to the device at build."""
    monkeypatch.setattr(images_module, "free_device_bytes", lambda device: 1000)
    moves = []
    monkeypatch.setattr(torch.Tensor, "to", lambda self, *a, **k: moves.append(a) or self)
    pool = ImagePool(small_digits.train, 8, 1, "cuda")
    assert pool.placement == "host" and pool.tensor.device.type == "cpu" and moves == []


def test_a_host_pool_gathers_on_the_host_and_sends_the_batch(small_digits):
    """`meta` stands for the GPU: the batch arrives there with the gathered shape, the split stays."""
    pool = ImagePool(small_digits.train, 8, 1, "meta", placement="host")
    batch = pool.take(torch.tensor([5, 0, 5]))
    assert batch.device.type == "meta" and batch.shape == (3, 1, 8, 8) and batch.dtype == torch.uint8
    assert pool.tensor.device.type == "cpu"
    assert [b.shape[0] for b in pool.ordered(100)] == [100, 100, 40]
    assert all(b.device.type == "meta" for b in pool.ordered(100))


def test_pools_on_the_cpu_serve_the_same_images_whatever_the_placement(small_digits):
    reference = split_tensor(small_digits.train, 8, 1)
    indices = torch.tensor([7, 3, 239, 3, 0])
    in_memory = ImagePool(small_digits.train, 8, 1, "cpu")
    host = ImagePool(small_digits.train, 8, 1, "cpu", placement="host")
    files = ImagePool(file_backed(small_digits.train), 8, 1, "cpu", workers=1)
    assert (in_memory.placement, host.placement, files.placement) == ("device", "host", "files")
    assert files.tensor is None  # a file-backed split is never decoded whole
    for pool in (in_memory, host, files):
        assert torch.equal(pool.take(indices), reference[indices])
        assert torch.equal(torch.cat(list(pool.ordered(100))), reference)
        lists = [[1, 2, 3], [239, 0], [5]]
        assert [torch.equal(b, reference[i]) for b, i in zip(pool.batches(lists), lists)] == [True] * 3
    # many files at once are decoded in chunks by the workers, in order
    many = torch.arange(239, -1, -1)
    assert torch.equal(files.take(many), reference[many])
    with pytest.raises(ValueError):
        ImagePool(small_digits.train, 8, 1, "cpu", placement="files")


def test_step_images_read_files_ahead_and_restart_on_a_resume(small_digits):
    from uslbench.learners.image_training import StepImages

    reference = split_tensor(small_digits.train, 8, 1)
    stream = IndexStream(240, 32, seed=4, name="u")
    steps = StepImages(ImagePool(file_backed(small_digits.train), 8, 1, "cpu", workers=1), stream, stop=12)
    for step in [0, 1, 2, 3, 7, 8, 2, 11]:  # 7 and 2: a resume elsewhere starts a new loader
        images, indices = steps(step)
        assert torch.equal(indices, stream.indices(step)) and torch.equal(images, reference[indices])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fixmatch", "supervised"])
def test_host_and_file_backed_pools_train_exactly_as_device_ones(small_digits, name, one_torch_thread, monkeypatch):
    """The pool and the test split kept on the host and sent per batch (what a GPU too small for
    them gets), or read from 'files' by DataLoader workers: the same metrics, bit for bit."""
    files = dataclasses.replace(small_digits, train=file_backed(small_digits.train),
                                test=file_backed(small_digits.test))
    labeled = labeled_set(small_digits)
    a = LEARNERS.create(name, dataset="digits", **tiny(name)).fit(small_digits, labeled, seed=2)
    b = LEARNERS.create(name, dataset="digits", **tiny(name)).fit(files, labeled, seed=2)
    monkeypatch.setattr(images_module, "place_pool", lambda *args, **kwargs: "host")
    c = LEARNERS.create(name, dataset="digits", **tiny(name)).fit(small_digits, labeled, seed=2)
    assert (a["top1"], a["curve"]) == (b["top1"], b["curve"]) == (c["top1"], c["curve"])
    assert a["precision"] == "fp32" and b["data_placement"] == {"pool": "files", "test": "files"}
    assert a["data_placement"] == {"pool": "device" if name == "fixmatch" else "host", "test": "device"}
    assert c["data_placement"] == {"pool": "host", "test": "host"}


def test_usl_t_head_mode_with_features_on_the_host_trains_exactly_as_on_the_device(monkeypatch, one_torch_thread):
    from uslbench.selectors import usl_t_train

    features = np.random.default_rng(0).standard_normal((600, 16)).astype(np.float32)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    a = SELECTORS.create("usl_t", epochs=3).select(features, 10, seed=2)
    monkeypatch.setattr(usl_t_train, "place_pool", lambda *args, **kwargs: "host")
    b = SELECTORS.create("usl_t", epochs=3).select(features, 10, seed=2)
    assert np.array_equal(a.indices, b.indices) and a.info["loss_first_last"] == b.info["loss_first_last"]
    assert a.info["training_device"] == "cpu" and a.info["precision"] == "fp32"


def test_a_learner_that_never_reads_the_pool_keeps_it_off_the_device(small_digits, monkeypatch):
    from uslbench.learners.image_training import TrainData
    from uslbench.training.augment import POLICIES

    monkeypatch.setattr(images_module, "free_device_bytes", lambda device: 1 << 40)
    data = TrainData.build(small_digits, labeled_set(small_digits), "cpu", POLICIES["digits"], needs_pool=False)
    assert data.placement == {"pool": "host", "test": "device"}
    assert LEARNERS.create("supervised", dataset="digits").needs_pool() is False
    assert LEARNERS.create("fixmatch", dataset="digits").needs_pool() is True
    assert LEARNERS.create("simclrv2", dataset="digits").needs_pool() is True


# ---------------------------------------------------------------------------------------------
# host syncs, seeding, EMA


def test_as_floats_reads_all_tensors_at_once_and_exactly():
    values = [0.5, torch.tensor(1.1), torch.tensor(2.2, dtype=torch.float64), torch.tensor([3.3])[0], 7]
    assert as_floats(values) == [0.5, float(torch.tensor(1.1)), 2.2, float(torch.tensor(3.3)), 7.0]
    assert as_floats([]) == [] and as_floats([1, 2.5]) == [1.0, 2.5]


def test_the_loop_reads_the_loss_only_at_periods_and_the_end(monkeypatch):
    """No host read of the loss or the logs per step (each would wait for the GPU)."""
    reads = []
    for method in ("__float__", "item", "tolist"):
        original = getattr(torch.Tensor, method)
        monkeypatch.setattr(torch.Tensor, method,
                            lambda self, *a, _m=method, _o=original, **k: reads.append(_m) or _o(self, *a, **k))
    monkeypatch.setenv("USLBENCH_QUIET", "1")
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    periods = []
    loop = TrainLoop(name="toy", model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), steps=40,
                     period=20, on_period=lambda done, losses: periods.append(list(losses)) or done)
    x = torch.ones(4, 3)
    losses = []

    def step_fn(step, generator):
        loss = model(x).pow(2).mean()
        losses.append(loss.detach().clone())
        return loss, {"part": loss.detach() * 2}

    result = loop.run(step_fn)
    assert len(reads) <= 3, reads  # one read per period (2), none per step
    assert periods == [[float(v) for v in losses[:20]], [float(v) for v in losses[20:]]]
    assert result.history == [20, 40] and result.pending_losses == []


def test_host_generator_is_the_step_generator_on_the_cpu_and_a_seeded_cpu_one_otherwise():
    seeding = Seeding.per_step(5, "train", "cpu")
    generator = seeding.begin_step(3)
    assert seeding.host_generator(3, generator) is generator

    class GpuGenerator:  # what the seeding hands out on a GPU, as far as host_generator looks
        device = torch.device("cuda", 0)

    a = seeding.host_generator(3, GpuGenerator())
    b = seeding.host_generator(3, GpuGenerator())
    c = seeding.host_generator(4, GpuGenerator())
    assert a.device.type == "cpu" and torch.equal(a.get_state(), b.get_state())
    assert not torch.equal(a.get_state(), c.get_state())


def _bn_net() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                               torch.nn.Linear(4 * 6 * 6, 3))


def test_fused_ema_equals_the_per_parameter_update_to_float_rounding(one_torch_thread):
    torch.manual_seed(0)
    model = _bn_net()
    plain, fused, default = EMA(model, 0.99, foreach=False), EMA(model, 0.99, foreach=True), EMA(model, 0.99)
    for _ in range(20):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.1)
        model.train()(torch.randn(8, 1, 8, 8))  # moves the BN statistics
        for ema in (plain, fused, default):
            ema.update(model)
    for a, b, c in zip(plain.model.state_dict().values(), fused.model.state_dict().values(),
                       default.model.state_dict().values()):
        assert torch.equal(a, c)  # the CPU default is the per-parameter update, bit for bit
        if a.is_floating_point():
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
        else:
            assert torch.equal(a, b)  # num_batches_tracked: copied


def test_mixmatch_draws_its_mixup_seed_from_the_host_generator():
    from uslbench.learners.image_training import Batch

    learner = LEARNERS.create("mixmatch", dataset="digits", **tiny("mixmatch"))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    x = torch.rand(4, 1, 8, 8)

    def batch(host_seed):
        return Batch([x], torch.tensor([0, 1, 2, 3]), [x, x.flip(0)], None, torch.Generator().manual_seed(1), 10,
                     host_generator=torch.Generator().manual_seed(host_seed))

    # same step generator, another host generator: another MixUp lambda, so another loss
    a, b, c = (learner.loss(model, batch(s), 10, 100)[0] for s in (7, 7, 8))
    assert torch.equal(a, b) and not torch.equal(a, c)


# ---------------------------------------------------------------------------------------------
# USL-T


def test_usl_t_trains_where_the_selection_runs():
    from uslbench.selectors.toolkit import ComputeDevice, compute_device
    from uslbench.selectors.usl_t_train import training_device

    assert training_device() == torch.device("cpu")
    with compute_device(ComputeDevice(name="cuda", torch_device="cuda:1")):
        assert training_device() == torch.device("cuda:1")
    with compute_device(ComputeDevice(name="cuda", faiss_gpu=True, torch_device=None)):  # torch without CUDA
        assert training_device() == torch.device("cpu")


def test_feature_augment_draws_on_the_generator_device_and_returns_on_x_device():
    from uslbench.training.augment import feature_augment

    x = torch.randn(5, 8)
    a = feature_augment(x, 0.3, 0.05, torch.Generator().manual_seed(2))
    b = feature_augment(x, 0.3, 0.05, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and a.shape == x.shape and not torch.equal(a, x)
    moved = feature_augment(x.to("meta"), 0.3, 0.05, torch.Generator().manual_seed(2))
    assert moved.device.type == "meta" and moved.shape == x.shape


def test_usl_t_backbone_mode_reads_a_file_backed_pool_like_an_in_memory_one(one_torch_thread):
    dataset = load_dataset("digits")
    features = dataset.train.array.reshape(len(dataset.train), -1).astype(np.float32) + 1.0
    features /= np.linalg.norm(features, axis=1, keepdims=True)

    class TinyEncoder:
        registry_name = "tiny"

        def build_module(self):
            torch.manual_seed(0)
            return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
                                       torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(16, 8)), 8

    from uslbench.selectors.base import SelectionContext

    results = []
    for data, workers in ((dataset, 0), (dataclasses.replace(dataset, train=file_backed(dataset.train)), 1)):
        context = SelectionContext(dataset=data, encoder=TinyEncoder(), dataset_name="digits")
        selection = SELECTORS.create("usl_t", mode="backbone", max_steps=6, batch_size=128,
                                     num_workers=workers).select(features, 12, seed=1, context=context)
        results.append(selection)
    assert np.array_equal(results[0].indices, results[1].indices)
    assert results[0].info["loss_first_last"] == results[1].info["loss_first_last"]
    assert results[0].info["steps"] == 6 and results[0].info["training_device"] == "cpu"
    assert results[0].info["precision"] == "fp32"


# ---------------------------------------------------------------------------------------------
# progress bars: only on a terminal (issue 12 item 15)


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("tty, env, disabled", [
    (False, {}, True), (True, {}, False), (True, {"CI": "true"}, True), (True, {"USLBENCH_QUIET": "1"}, True),
])
def test_progress_bars_only_on_a_terminal(monkeypatch, tty, env, disabled):
    from uslbench.utils import progress_disabled

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("USLBENCH_QUIET", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(sys, "stderr", _Terminal() if tty else io.StringIO())
    assert progress_disabled() is disabled


def test_feature_extraction_bar_follows_the_rule(monkeypatch, small_digits):
    from uslbench.encoders.extract import Preprocess, extract_features

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("USLBENCH_QUIET", raising=False)
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 64, 4))
    written = {}
    for name, stream in (("log", io.StringIO()), ("terminal", _Terminal())):
        monkeypatch.setattr(sys, "stderr", stream)
        extract_features(module, small_digits.test, Preprocess((0.5,), (0.5,)), batch_size=40, desc="feats")
        written[name] = stream.getvalue()
    assert written["log"] == "" and "feats" in written["terminal"]


# ---------------------------------------------------------------------------------------------
# on a real GPU (skipped here)


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", ["fixmatch", "mixmatch", "comatch", "supervised", "simclrv2"])
def test_cuda_learners_train_under_autocast(small_digits, name):
    metrics = LEARNERS.create(name, dataset="digits", **tiny(name)).fit(small_digits, labeled_set(small_digits),
                                                                         seed=2, device="cuda")
    expected = "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"
    assert metrics["precision"] == expected and metrics["steps"] == 6 and 0.0 <= metrics["top1"] <= 100.0


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_cuda_host_pool_sends_pinned_batches(small_digits):
    pool = ImagePool(small_digits.train, 8, 1, "cuda", placement="host")
    indices = torch.tensor([4, 2, 200])
    batch = pool.take(indices)
    assert batch.is_cuda and torch.equal(batch.cpu(), split_tensor(small_digits.train, 8, 1)[indices])
    assert ImagePool(small_digits.train, 8, 1, "cuda").placement == "device"  # 15 KB fit


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_cuda_fused_ema_equals_the_cpu_update():
    torch.manual_seed(0)
    model = _bn_net()
    cpu = EMA(model, 0.99)
    gpu = EMA(model.cuda(), 0.99)
    model = model.cpu()
    for _ in range(20):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.1)
        cpu.update(model)
        gpu.update(model.cuda())
        model = model.cpu()
    for a, b in zip(cpu.model.state_dict().values(), gpu.model.state_dict().values()):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_cuda_usl_t_head_mode_trains_on_the_gpu():
    from uslbench.selectors.base import SelectionContext

    dataset = load_dataset("digits")
    features = dataset.train.array.reshape(len(dataset.train), -1).astype(np.float32) + 1.0
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    selection = SELECTORS.create("usl_t", epochs=3).select(features, 10, seed=3,
                                                          context=SelectionContext(device="cuda"))
    assert selection.info["training_device"].startswith("cuda") and len(set(selection.indices.tolist())) == 10
