"""clip_usl = usl with the encoder fixed to clip (a stand-in clip encoder registered here)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from uslbench.harness.pipeline import run_spec, select_spec
from uslbench.harness.spec import RunSpec
from uslbench.encoders.base import Encoder, FeatureSet, l2_normalise
from uslbench.errors import UserError
from uslbench.registry import ENCODERS, SELECTORS


@dataclass
class StandInConfig:
    dim: int = 12


calls: list[str] = []


class StandInCLIP(Encoder):
    """Random projection of the pixels: shaped like an embedding, cheap, deterministic."""

    def encode(self, dataset, device="cpu"):
        calls.append(dataset.name)
        rng = np.random.default_rng(0)
        def embed(split):
            pixels = split.array.reshape(len(split), -1).astype(np.float32) + 1.0
            return l2_normalise(pixels @ rng.standard_normal((pixels.shape[1], self.config.dim)).astype(np.float32))
        return FeatureSet(train=embed(dataset.train), test=embed(dataset.test))


@pytest.fixture
def stand_in_clip():
    saved = ENCODERS._entries.pop("clip", None)
    ENCODERS.register("clip", "stand-in CLIP for tests", config=StandInConfig)(StandInCLIP)
    calls.clear()
    try:
        yield
    finally:
        ENCODERS.unregister("clip")
        if saved is not None:
            ENCODERS._entries["clip"] = saved


def test_clip_usl_is_usl_with_the_clip_preset():
    selector = SELECTORS.create("clip_usl")
    assert SELECTORS.traits("clip_usl").fixed_encoder == "clip" and isinstance(selector, type(SELECTORS.create("usl")))
    features = np.random.default_rng(0).standard_normal((300, 8)).astype(np.float32)
    a = selector.select(features, 10, seed=1)
    b = SELECTORS.create("usl", preset="imagenet_clip").select(features, 10, seed=1)
    assert np.array_equal(a.indices, b.indices)
    assert a.info["resolved_config"]["lam"] == 0.05 and a.info["resolved_config"]["reg_nearest"] == 32


def test_pipeline_selects_on_clip_features_and_learns_on_the_run_encoder(stand_in_clip, tmp_path):
    spec = RunSpec(dataset="digits", selector="clip_usl", learner="linear", budget=10, seed=1)
    outcome = run_spec(spec, tmp_path)
    record = outcome.record
    assert record["status"] == "ok" and calls == ["digits"]
    assert record["resolved"]["encoder"]["encoder"] == "pixels"  # the learner's features
    assert record["resolved"]["selection_encoder"]["encoder"] == "clip"
    assert list((tmp_path / "cache" / "features" / "digits").glob("clip-*.npy"))
    # the same selection through `select --dataset` comes from the cache
    data, cached, _ = select_spec(RunSpec(dataset="digits", selector="clip_usl", learner=None, budget=10, seed=1),
                                  tmp_path)
    assert cached == {"features": True, "selection": True}
    assert list(data["indices"]) == record["selection"]["indices"]


def test_without_a_clip_encoder_the_error_says_what_to_do(tmp_path):
    saved = ENCODERS._entries.pop("clip", None)
    try:
        with pytest.raises(UserError, match="clip extra"):
            run_spec(RunSpec(dataset="digits", selector="clip_usl", learner="linear", budget=10), tmp_path)
    finally:
        if saved is not None:
            ENCODERS._entries["clip"] = saved


def test_sweep_selection_job_selects_on_clip_features(stand_in_clip, tmp_path):
    """A sweep's selection job (Slurm/local) must compute the same selection as `run`: on the
    selection encoder's features, cached under the clip_usl selection key."""
    from uslbench.harness.jobs import StageJob

    spec = RunSpec(dataset="digits", selector="clip_usl", learner="linear", budget=10, seed=1)
    summary = StageJob("selection", [spec.to_dict()], str(tmp_path), device="cpu")()
    assert summary["ok"] == 1 and summary["failed"] == 0
    assert list((tmp_path / "cache" / "features" / "digits").glob("clip-*.npy"))
    outcome = run_spec(spec, tmp_path)
    assert outcome.cached["selection"] is True  # reused, not recomputed
    expected, _, _ = select_spec(RunSpec(dataset="digits", selector="clip_usl", learner=None, budget=10, seed=1),
                                 tmp_path / "fresh")
    assert outcome.record["selection"]["indices"] == list(expected["indices"])
