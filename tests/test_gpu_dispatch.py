"""Where selection runs: the device dispatch (faiss GPU API present or absent, CUDA visible or not),
what the selection record says, and the torch kernels against the NumPy ones.

On this CPU machine faiss's GPU API is absent; the combinations are simulated by monkeypatching
faiss.get_num_gpus / the GPU symbols and torch.cuda, and the GPU calls themselves by CPU stand-ins
(an index "copied to the GPU" stays the same CPU index). Tests marked `gpu` need a CUDA GPU and are
skipped without one.
"""
from __future__ import annotations

import faiss
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import gaussian_mixture
from uslbench.errors import UserError
from uslbench.catalog import SELECTORS
from uslbench.selectors import toolkit
from uslbench.selectors.base import SelectionContext
from uslbench.selectors.knn_sums import knn_sq_dist_sums
from uslbench.selectors.toolkit import (ComputeDevice, KnnParams, check_selection_device, compute_device,
                                        resolve_compute)
from uslbench.selectors.torch_exact import ieee_matmul, knn_sq_dist_sums_torch, range_graph_torch, tile_rows

CUDA = torch.cuda.is_available()


def simulate(monkeypatch, faiss_gpus: int, torch_gpus: int) -> None:
    """This machine as one with `faiss_gpus` GPUs usable by faiss (0: faiss-cpu, no GPU symbols)
    and `torch_gpus` CUDA devices for torch."""
    if faiss_gpus:
        monkeypatch.setattr(faiss, "StandardGpuResources", object, raising=False)
        monkeypatch.setattr(faiss, "index_cpu_to_gpu", lambda res, dev, index: index, raising=False)
    else:
        monkeypatch.delattr(faiss, "StandardGpuResources", raising=False)
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: faiss_gpus)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: torch_gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: torch_gpus)


def fake_gpu_calls(monkeypatch) -> None:
    """The GPU calls of the toolkit as CPU stand-ins: an index 'on the GPU' is the CPU index, the
    GPU brute-force k-NN is faiss.knn. Everything around them (what is built, trained, searched,
    copied back, recorded) runs as on a GPU machine."""
    monkeypatch.setattr(toolkit, "_index_to_gpu", lambda index, gpu_id: index)
    monkeypatch.setattr(toolkit, "_index_to_cpu", lambda index: index)
    monkeypatch.setattr(toolkit, "_knn_gpu", lambda queries, base, k, gpu_id: faiss.knn(queries, base, k))


# ---------------------------------------------------------------- which path is chosen

def test_this_machine_has_no_faiss_gpu_api():
    """The premise of the simulated tests: faiss-cpu, no GPU symbols (skip if run on a GPU box)."""
    if toolkit.faiss_gpu_count() or CUDA:
        pytest.skip("this machine has a GPU")
    assert not hasattr(faiss, "StandardGpuResources")
    assert resolve_compute("auto") == ComputeDevice()


@pytest.mark.parametrize("faiss_gpus, torch_gpus, expected", [
    (0, 0, ("cpu", False, None)),            # a CPU machine
    (0, 1, ("cuda", False, "cuda:0")),       # faiss-cpu on a GPU machine: faiss here, torch kernels there
    (1, 0, ("cuda", True, None)),            # faiss-gpu with a CPU-only torch
    (1, 1, ("cuda", True, "cuda:0")),        # everything on the GPU
])
def test_auto_takes_what_is_there(monkeypatch, faiss_gpus, torch_gpus, expected):
    simulate(monkeypatch, faiss_gpus, torch_gpus)
    compute = resolve_compute("auto")
    assert (compute.name, compute.faiss_gpu, compute.torch_device) == expected
    assert resolve_compute("cpu") == ComputeDevice()  # cpu is cpu, whatever is installed


def test_lenient_cuda_falls_back_part_by_part(monkeypatch):
    """`run --device cuda` (the learner's device) with faiss-cpu: faiss stays on the CPU, the
    torch kernels go to the GPU, and the record will say so."""
    simulate(monkeypatch, faiss_gpus=0, torch_gpus=2)
    compute = resolve_compute("cuda:1")
    assert (compute.name, compute.gpu_id, compute.faiss_gpu, compute.torch_device) == ("cuda:1", 1, False, "cuda:1")
    simulate(monkeypatch, faiss_gpus=0, torch_gpus=0)
    assert resolve_compute("cuda") == ComputeDevice()


@pytest.mark.parametrize("faiss_gpus, torch_gpus, device, words", [
    (0, 0, "cuda", ["no CUDA GPU is visible", "faiss-cpu"]),
    (0, 1, "cuda", ["no GPU support", "pip uninstall -y faiss-cpu && pip install -e '.[gpu]'", "--device auto"]),
    (1, 0, "cuda", ["torch sees no CUDA device"]),
    (1, 1, "cuda:1", ["GPU 1 is not visible"]),
])
def test_strict_cuda_says_what_is_missing(monkeypatch, faiss_gpus, torch_gpus, device, words):
    simulate(monkeypatch, faiss_gpus, torch_gpus)
    with pytest.raises(UserError) as error:
        check_selection_device(device)
    assert all(word in str(error.value) for word in words), str(error.value)
    check_selection_device("auto")  # never refused
    check_selection_device("cpu")


def test_strict_cuda_passes_with_both(monkeypatch):
    simulate(monkeypatch, faiss_gpus=2, torch_gpus=2)
    check_selection_device("cuda")
    check_selection_device("cuda:1")


def test_unknown_device_word():
    for word in ("gpu", "cuda:x", "tpu"):
        with pytest.raises(UserError, match="Unknown device"):
            resolve_compute(word)


def test_select_cli_refuses_cuda_before_any_work(tmp_path, monkeypatch):
    from uslbench.cli import main

    simulate(monkeypatch, faiss_gpus=0, torch_gpus=0)
    features = tmp_path / "f.npy"
    np.save(features, gaussian_mixture(200, 8))
    ran = []
    monkeypatch.setattr("uslbench.harness.selection.select_features", lambda *a, **k: ran.append(1))
    out = CliRunner().invoke(main, ["select", "--features", str(features), "--selector", "usl", "--budget", "5",
                                    "--device", "cuda", "--export", str(tmp_path / "picks.npy")])
    assert out.exit_code == 2 and "no CUDA GPU is visible" in out.output
    assert not ran and not (tmp_path / "picks.npy").exists()


def test_select_cli_records_the_device(tmp_path):
    from uslbench.cli import main

    features = tmp_path / "f.npy"
    np.save(features, gaussian_mixture(300, 8))
    out = CliRunner().invoke(main, ["select", "--features", str(features), "--selector", "usl", "--budget", "6",
                                    "--device", "cpu"])
    assert out.exit_code == 0, out.output
    assert '"selection_device": "cpu"' in out.output and '"faiss_gpu": false' in out.output
    assert '"gpu_ops": []' in out.output


# ---------------------------------------------------------------- what the record says

def test_cpu_record_and_label_free_selectors_only():
    x = gaussian_mixture(400, 8)
    selection = SELECTORS.create("usl").select(x, 8, seed=1, context=SelectionContext(device="cpu"))
    assert {k: selection.info[k] for k in ("selection_device", "faiss_gpu", "gpu_ops")} == \
        {"selection_device": "cpu", "faiss_gpu": False, "gpu_ops": []}
    random_pick = SELECTORS.create("random").select(x, 8, seed=1)
    assert "selection_device" not in random_pick.info  # no features, no toolkit: nothing to say


def test_compute_device_is_scoped():
    fake = ComputeDevice(name="cuda", faiss_gpu=True, torch_device="cpu")
    with compute_device(fake) as inside:
        assert toolkit.active_compute() is inside is fake
        with compute_device("cpu"):
            assert toolkit.active_compute().name == "cpu"
        assert toolkit.active_compute() is fake
    assert toolkit.active_compute().name == "cpu"


def torch_kernels_on_cpu_tensors(monkeypatch) -> None:
    """`--device cuda` resolves to faiss on the (simulated) GPU and the torch kernels on CPU tensors."""
    monkeypatch.setattr(toolkit, "resolve_compute",
                        lambda device, strict=False: ComputeDevice(name="cuda", faiss_gpu=True, torch_device="cpu"))


def _select(name, x, budget, device, **config):
    return SELECTORS.create(name, **config).select(x, budget, seed=3, context=SelectionContext(device=device))


def test_usl_exact_on_simulated_gpu_matches_cpu(monkeypatch):
    """faiss-gpu + CUDA torch: K-Means through the GPU index, the density through the torch kernel
    (run here on CPU tensors): the same picks as the CPU path, and the record lists both."""
    x = gaussian_mixture(1500, 16, clusters=12, seed=1)
    cpu = _select("usl", x, 12, "cpu")
    simulate(monkeypatch, faiss_gpus=1, torch_gpus=1)
    fake_gpu_calls(monkeypatch)
    torch_kernels_on_cpu_tensors(monkeypatch)
    gpu = _select("usl", x, 12, "cuda")
    assert gpu.indices.tolist() == cpu.indices.tolist()
    assert gpu.info["selection_device"] == "cuda" and gpu.info["faiss_gpu"] is True
    assert gpu.info["gpu_ops"] == ["kmeans", "knn_sums"]
    assert gpu.info["mean_knn_sq_dist_pool"] == pytest.approx(cpu.info["mean_knn_sq_dist_pool"], rel=1e-5)


def test_usl_ivf_on_simulated_gpu_matches_cpu(monkeypatch):
    """Above knn_exact_max: the IVF quantizer trained through a GPU assignment index
    (IndexIVF.clustering_index), the index copied to the GPU, searched there; the regulariser's
    index over the picks on the GPU too. Same picks as the CPU path."""
    x = gaussian_mixture(1500, 16, clusters=12, seed=2)
    config = dict(knn_exact_max=500, reg_nearest=4, knn_k=10)
    cpu = _select("usl", x, 12, "cpu", **config)
    simulate(monkeypatch, faiss_gpus=1, torch_gpus=0)
    fake_gpu_calls(monkeypatch)
    gpu = _select("usl", x, 12, "cuda", **config)
    assert gpu.info["knn_index"].startswith("ivf") and gpu.info["faiss_gpu"] is True
    assert gpu.info["gpu_ops"] == ["faiss_index", "ivf_training", "kmeans", "knn"]
    assert gpu.indices.tolist() == cpu.indices.tolist()


def test_knn_ivf_short_lists_search_a_cpu_copy(monkeypatch):
    """Rows whose probed lists hold fewer than k points are searched again with every list, on a
    CPU copy of the GPU index (the GPU scans at most 2,048 lists)."""
    simulate(monkeypatch, faiss_gpus=1, torch_gpus=0)
    fake_gpu_calls(monkeypatch)
    copies = []
    monkeypatch.setattr(toolkit, "_index_to_cpu", lambda index: copies.append(index) or index)
    x = gaussian_mixture(600, 8, clusters=20, seed=4)
    params = KnnParams(exact_max=100, ivf_nlist=60, ivf_nprobe=1)
    with compute_device("cuda") as compute:
        d2, idx, kind = toolkit.knn(x, 40, params)
    assert kind.startswith("ivf") and len(copies) == 1
    assert sorted(compute.gpu_ops) == ["faiss_index", "ivf_training", "knn"]
    assert (idx >= 0).all()
    exact_d2, _ = faiss.knn(x, x, 40)
    np.testing.assert_allclose(d2, np.maximum(exact_d2, 0), rtol=1e-4, atol=1e-5)


def test_flat_knn_on_simulated_gpu_uses_knn_gpu(monkeypatch):
    simulate(monkeypatch, faiss_gpus=1, torch_gpus=0)
    calls = []
    monkeypatch.setattr(toolkit, "_knn_gpu",
                        lambda q, base, k, gpu_id: calls.append((len(q), k, gpu_id)) or faiss.knn(q, base, k))
    x = gaussian_mixture(300, 8)
    with compute_device("cuda:0") as compute:
        d2, idx, kind = toolkit.knn(x, 7, KnnParams(block_rows=128))
    assert kind == "flat" and calls == [(128, 7, 0), (128, 7, 0), (44, 7, 0)] and compute.gpu_ops == ["knn"]
    np.testing.assert_array_equal(idx, faiss.knn(x, x, 7)[1])


def test_probcover_on_simulated_gpu_matches_cpu(monkeypatch):
    """The exact range graph through the torch kernel, and above knn_exact_max the IVF range search
    through faiss's GPU emulation (contrib range_search_gpu: k-NN with k = 1,024 plus a CPU search
    of the rows with more results), on the CPU index standing in for the GPU one."""
    x = gaussian_mixture(1200, 8, clusters=10, seed=5)
    cpu = _select("probcover", x, 10, "cpu")
    simulate(monkeypatch, faiss_gpus=1, torch_gpus=0)
    fake_gpu_calls(monkeypatch)
    torch_kernels_on_cpu_tensors(monkeypatch)
    gpu = _select("probcover", x, 10, "cuda")
    assert gpu.indices.tolist() == cpu.indices.tolist() and gpu.info["edges"] == cpu.info["edges"]
    assert gpu.info["gpu_ops"] == ["kmeans", "range_graph"] and gpu.info["knn_index"].endswith("torch)")

    cpu_ivf = _select("probcover", x, 10, "cpu", knn_exact_max=300, delta=0.35)
    gpu_ivf = _select("probcover", x, 10, "cuda", knn_exact_max=300, delta=0.35)
    assert gpu_ivf.info["gpu_ops"] == ["ivf_training", "range_search"]
    assert gpu_ivf.info["edges"] == cpu_ivf.info["edges"] and gpu_ivf.info["mean_degree"] > 20
    assert gpu_ivf.indices.tolist() == cpu_ivf.indices.tolist()


def test_range_search_gpu_fallback_rows_with_many_results(monkeypatch):
    """Rows with more than 1,024 results come from the CPU index: the graph equals the CPU one."""
    simulate(monkeypatch, faiss_gpus=1, torch_gpus=0)
    fake_gpu_calls(monkeypatch)
    x = gaussian_mixture(2500, 4, clusters=2, seed=6)
    params = KnnParams(exact_max=100, ivf_nlist=4, ivf_nprobe=4)
    offsets_cpu, targets_cpu, _ = toolkit.range_graph(x, 0.5, params)
    with compute_device("cuda"):
        offsets, targets, _ = toolkit.range_graph(x, 0.5, params)
    assert np.diff(offsets_cpu).max() > 1024  # the fallback was needed
    np.testing.assert_array_equal(offsets, offsets_cpu)
    for i in range(0, 2500, 97):
        assert sorted(targets[offsets[i]:offsets[i + 1]]) == sorted(targets_cpu[offsets_cpu[i]:offsets_cpu[i + 1]])


# ---------------------------------------------------------------- the torch kernels equal the NumPy ones

@pytest.mark.parametrize("n, d, k, tile", [
    (1000, 16, 20, None),   # one tile
    (1000, 16, 20, 128),    # many tiles, the last one shorter
    (777, 8, 300, 100),     # tile narrower than k: the running k smallest carry most of it
    (64, 4, 64, 10),        # k = N: every distance counts
])
def test_torch_density_equals_numpy(n, d, k, tile):
    x = gaussian_mixture(n, d, clusters=6, seed=n)
    stats = {}
    ours = knn_sq_dist_sums_torch(x, k, device="cpu", tile=tile, stats=stats)
    np.testing.assert_allclose(ours, knn_sq_dist_sums(x, k), rtol=1e-5, atol=1e-6)
    d2, _ = faiss.knn(x, x, min(k, n))
    np.testing.assert_allclose(ours, np.maximum(d2, 0).sum(1), rtol=1e-5, atol=1e-5)
    assert stats["tiles"] == -(-n // stats["tile_rows"]) and stats["candidates_per_row"] == n


def test_torch_density_duplicates_and_offset():
    """Exact duplicates (distance 0 to a twin) and a large shared offset (centred away)."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((300, 6)).astype(np.float32)
    x = np.vstack([x, x[:50]]) + 100.0
    ours = knn_sq_dist_sums_torch(x, 5, tile=64)
    np.testing.assert_allclose(ours, knn_sq_dist_sums(x, 5), rtol=1e-5, atol=1e-4)
    brute = ((x[:, None, :].astype(np.float64) - x[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(ours, np.sort(brute, axis=1)[:, :5].sum(1), rtol=1e-4, atol=1e-3)


def test_torch_density_is_deterministic_across_tilings():
    x = gaussian_mixture(500, 8, seed=8)
    a = knn_sq_dist_sums_torch(x, 30, tile=97)
    b = knn_sq_dist_sums_torch(x, 30, tile=97)
    c = knn_sq_dist_sums_torch(x, 30, tile=500)
    assert np.array_equal(a, b)
    np.testing.assert_allclose(a, c, rtol=1e-6)


def test_tile_rows_fit_the_budget():
    for n, k, budget in [(50_000, 400, 1 << 30), (50_000, 20, 64 << 20), (10, 5, 1 << 30), (10**6, 400, 100)]:
        rows = tile_rows(n, k, budget)
        assert 1 <= rows <= min(n, 16_384)
        if 1 < rows < min(n, 16_384):
            assert 16 * rows * (rows + k) <= budget < 16 * (rows + 1) * (rows + 1 + k)


def test_ieee_matmul_restores_the_setting():
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        with ieee_matmul():
            assert torch.get_float32_matmul_precision() == "highest"
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(previous)


def test_torch_range_graph_equals_numpy():
    x = gaussian_mixture(900, 8, clusters=5, seed=9)
    d2 = ((x[:, None, :].astype(np.float64) - x[None, :, :]) ** 2).sum(-1)
    values = np.unique(d2[np.triu_indices(len(x), 1)])
    gap = np.argmax(np.diff(values[(values > 0.2) & (values < 0.4)]))  # a radius far from every distance
    middle = values[(values > 0.2) & (values < 0.4)]
    radius_sq = float((middle[gap] + middle[gap + 1]) / 2)
    offsets, targets = range_graph_torch(x, radius_sq, block_rows=128)
    ref_offsets, ref_targets = toolkit._exact_range_graph(x, radius_sq, 200, 1, "test")
    np.testing.assert_array_equal(offsets, ref_offsets)
    np.testing.assert_array_equal(targets, ref_targets)
    assert targets.dtype == np.int32 and offsets[-1] == (d2 < radius_sq).sum()


# ---------------------------------------------------------------- on a real GPU (skipped here)

@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("n, k", [(5000, 50), (20_000, 400)])
def test_cuda_density_equals_cpu(n, k):
    x = gaussian_mixture(n, 32, clusters=20, seed=n)
    np.testing.assert_allclose(knn_sq_dist_sums_torch(x, k, device="cuda"), knn_sq_dist_sums(x, k), rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_cuda_range_graph_equals_cpu():
    x = gaussian_mixture(6000, 16, clusters=10, seed=10)
    offsets, targets = range_graph_torch(x, 0.3, device="cuda")
    ref_offsets, ref_targets = toolkit._exact_range_graph(x, 0.3, 1000, None, "test")
    assert abs(int(offsets[-1]) - int(ref_offsets[-1])) <= 1e-6 * ref_offsets[-1] + 4  # ties at the radius only


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_cuda_usl_selection_records_the_gpu():
    x = gaussian_mixture(30_000, 32, clusters=40, seed=11)
    gpu = _select("usl", x, 40, "cuda")
    cpu = _select("usl", x, 40, "cpu")
    assert gpu.info["selection_device"] == "cuda" and "knn_sums" in gpu.info["gpu_ops"]
    assert gpu.info["faiss_gpu"] == (toolkit.faiss_gpu_count() > 0)
    if gpu.info["faiss_gpu"]:
        assert "kmeans" in gpu.info["gpu_ops"]
    assert gpu.info["mean_knn_sq_dist_pool"] == pytest.approx(cpu.info["mean_knn_sq_dist_pool"], rel=1e-5)
    assert len(set(gpu.indices) & set(cpu.indices)) >= 30  # K-Means rounding on the GPU may move a few picks


def test_base_install_without_faiss_says_which_extra_to_install():
    """`pip install -e .` carries no faiss: the first faiss call is a UserError naming the extras."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['faiss'] = None\n"
            "from uslbench.selectors import toolkit\n"
            "from uslbench.errors import UserError\n"
            "try:\n    toolkit.kmeans(__import__('numpy').ones((4, 2), 'float32'), 2)\n"
            "except UserError as error:\n    print('USERERROR', error)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "USERERROR faiss is not installed" in out.stdout, out.stderr
    assert "pip install -e '.[cpu]'" in out.stdout and "pip install -e '.[gpu]'" in out.stdout
