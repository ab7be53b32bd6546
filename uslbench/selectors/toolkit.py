"""Shared numerical toolkit for selectors: k-NN, K-Means, range search, blockwise distances.

Everything here goes through faiss and works in row blocks, so nothing allocates N x N or
N x m x d. Distances are SQUARED L2 unless a name says otherwise.

Where the work runs: `compute_device("cpu" | "cuda[:N]" | "auto")` sets the device for the
calls made inside it (`Selector.select` sets it from the selection context). On a GPU, K-Means,
flat and IVF k-NN and the IVF range search go through faiss's own GPU API (StandardGpuResources,
index_cpu_to_gpu, knn_gpu, contrib.exhaustive_search.range_search_gpu) when the installed faiss
has GPU support, and the exact k-NN sums and the exact range graph run as torch kernels on the
device (`torch_exact`). The active device records which operations ran on the GPU.
"""
from __future__ import annotations

import contextvars
import functools
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from ..errors import UserError
from ..utils import file_digest_ok, progress_disabled, record_file_digest
from .tiling import distance_factors, row_blocks  # noqa: F401  (re-exported: selectors import them from here)


class _LazyFaiss:
    """The faiss module, imported at the first attribute read: registering and describing the
    selectors (`list`, `describe`) loads no faiss. The base install carries no faiss (the `cpu` or
    `gpu` extra chooses one): then every read is a UserError that says which extra to install."""

    def __getattr__(self, name: str):
        try:
            import faiss
        except ImportError:
            raise UserError("faiss is not installed. Install uslbench with one of its faiss extras: "
                            "pip install -e '.[cpu]' (faiss-cpu) or, on a CUDA machine, pip install -e '.[gpu]' "
                            "(faiss-gpu).") from None
        return getattr(faiss, name)


faiss = _LazyFaiss()

# faiss's GPU k-selection handles at most this many neighbours per query (faiss >= 1.7.3)
GPU_MAX_K = 2048


@dataclass
class ComputeDevice:
    """Where the toolkit's work runs while this device is active (see `compute_device`).

    name: "cpu" or "cuda[:N]"; faiss_gpu: faiss K-Means, k-NN and range search run on GPU
    `gpu_id` through faiss's GPU API; torch_device: where the torch kernels run (the exact k-NN
    sums of the USL density and the exact range graph), None for the NumPy/BLAS versions (the
    CPU default). gpu_ops: the operations that actually ran on the GPU, filled as they run."""

    name: str = "cpu"
    gpu_id: int = 0
    faiss_gpu: bool = False
    torch_device: str | None = None
    gpu_ops: list[str] = field(default_factory=list)

    def ran_on_gpu(self, operation: str) -> None:
        if operation not in self.gpu_ops:
            self.gpu_ops.append(operation)

    def record(self) -> dict:
        """What a selection's info says about where it ran."""
        return {"selection_device": self.name, "faiss_gpu": self.faiss_gpu, "gpu_ops": sorted(self.gpu_ops)}


_CPU = ComputeDevice()
_ACTIVE: contextvars.ContextVar[ComputeDevice | None] = contextvars.ContextVar("uslbench_compute", default=None)


def active_compute() -> ComputeDevice:
    """The device set by the innermost `compute_device` (the CPU outside any)."""
    return _ACTIVE.get() or _CPU


def faiss_gpu_count() -> int:
    """GPUs the installed faiss can use: 0 for faiss-cpu (no GPU symbols) or when none is visible."""
    if not (hasattr(faiss, "StandardGpuResources") and hasattr(faiss, "index_cpu_to_gpu")):
        return 0
    try:
        return int(faiss.get_num_gpus())
    except Exception:  # noqa: BLE001 - a broken CUDA runtime counts as no GPU
        return 0


def torch_cuda_count() -> int:
    """CUDA devices torch can use (0 for a CPU-only torch build or without a visible GPU).

    On Linux without any NVIDIA device node (/dev/nvidia0, ...) and with torch not yet imported,
    the answer is 0 without importing torch: `select --features --device auto` on a CPU machine
    then never pays torch's start-up (about 3 s and 0.7 GB)."""
    import sys
    from pathlib import Path

    if "torch" not in sys.modules and sys.platform.startswith("linux") and not any(Path("/dev").glob("nvidia[0-9]*")):
        return 0
    try:
        import torch
    except ImportError:
        return 0
    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def resolve_compute(device: str = "auto", strict: bool = False) -> ComputeDevice:
    """The ComputeDevice for a device word: "cpu", "auto" (a GPU when one is visible) or
    "cuda[:N]". Each part that cannot use the GPU falls back to the CPU (faiss-cpu installed:
    faiss on the CPU, the torch kernels still on the GPU), unless `strict`: then "cuda" without
    a visible GPU, without faiss GPU support or without a CUDA torch raises a UserError (before
    any work; the `select` command asks for this when the user typed --device cuda).

    Raises
    ------
    UserError
        An unknown device word, or (strict) a GPU part that is not available."""
    word = str(device or "auto").strip().lower()
    if word == "cpu":
        return ComputeDevice()
    if word == "auto":
        name, gpu_id, strict = "cuda", 0, False
    elif word == "cuda" or (word.startswith("cuda:") and word[5:].isdigit()):
        name, gpu_id = word, int(word[5:] or 0) if ":" in word else 0
    else:
        raise UserError(f"Unknown device {device!r}; use cpu, cuda, cuda:N or auto.")
    faiss_gpus, torch_gpus = faiss_gpu_count(), torch_cuda_count()
    faiss_gpu, torch_gpu = gpu_id < faiss_gpus, gpu_id < torch_gpus
    if strict and not (faiss_gpu and torch_gpu):
        if not faiss_gpus and not torch_gpus:
            why = "no CUDA GPU is visible here"
            if not hasattr(faiss, "StandardGpuResources"):
                why += " and the installed faiss has no GPU support (faiss-cpu)"
        elif not hasattr(faiss, "StandardGpuResources"):
            why = ("the installed faiss has no GPU support (faiss-cpu); switch with "
                   "`pip uninstall -y faiss-cpu && pip install -e '.[gpu]'`, or use --device auto, which keeps "
                   "faiss on the CPU and runs the rest on the GPU")
        elif not torch_gpus:
            why = "torch sees no CUDA device (a CPU-only torch build?)"
        else:
            why = f"GPU {gpu_id} is not visible (faiss sees {faiss_gpus}, torch sees {torch_gpus})"
        raise UserError(f"--device {word} asks for selection on the GPU, but {why}. Use --device cpu or auto.")
    if not (faiss_gpu or torch_gpu):
        return ComputeDevice()
    return ComputeDevice(name=name, gpu_id=gpu_id, faiss_gpu=faiss_gpu,
                         torch_device=f"cuda:{gpu_id}" if torch_gpu else None)


def check_selection_device(device: str) -> None:
    """Refuse `--device cuda[:N]` when selection cannot run on that GPU (no GPU, faiss-cpu, a
    CPU-only torch); "cpu" and "auto" always pass. Call it before any work."""
    if str(device).strip().lower().startswith("cuda"):
        resolve_compute(device, strict=True)


@contextmanager
def compute_device(device: str | ComputeDevice = "cpu", strict: bool = False) -> Iterator[ComputeDevice]:
    """Run the toolkit calls inside on `device` (a word for `resolve_compute`, or a ComputeDevice);
    yields the ComputeDevice, whose `gpu_ops` afterwards lists what ran on the GPU."""
    compute = device if isinstance(device, ComputeDevice) else resolve_compute(device, strict)
    token = _ACTIVE.set(compute)
    try:
        yield compute
    finally:
        _ACTIVE.reset(token)


# The GPU calls, one small function each (the CPU tests replace them with CPU stand-ins).
@functools.lru_cache(maxsize=None)
def _gpu_resources(gpu_id: int):
    """One StandardGpuResources per GPU and process (cuBLAS handles, streams, scratch memory)."""
    return faiss.StandardGpuResources()


def _index_to_gpu(index, gpu_id: int):
    return faiss.index_cpu_to_gpu(_gpu_resources(gpu_id), gpu_id, index)


def _index_to_cpu(index):
    return faiss.index_gpu_to_cpu(index)


def _knn_gpu(queries: np.ndarray, base: np.ndarray, k: int, gpu_id: int) -> tuple[np.ndarray, np.ndarray]:
    return faiss.knn_gpu(_gpu_resources(gpu_id), queries, base, k, device=gpu_id)


def _range_search_gpu(queries: np.ndarray, radius_sq: float, gpu_index, cpu_index):
    """faiss has no GPU range search; its contrib emulates one: a GPU k-NN with k = 1024, and the
    queries with more results than that searched again on the CPU index."""
    from faiss.contrib.exhaustive_search import range_search_gpu

    return range_search_gpu(queries, radius_sq, gpu_index, cpu_index, gpu_k=1024)


@dataclass
class KnnParams:
    """How k-NN is computed: exact (flat) up to `exact_max` points, approximate above it.

    IVF: `ivf_nlist` inverted lists (default round(3.6 * sqrt(N))), trained with `ivf_train_iters`
    Lloyd iterations on `ivf_train_per_list` seeded sample points per list; `ivf_nprobe` lists
    scanned per query. HNSW: `hnsw_m` links per node, `hnsw_ef_search` candidates per query.
    """

    exact_max: int = 200_000
    approximate: str = "ivf"      # "ivf" or "hnsw"
    ivf_nlist: int | None = None   # default: about 3.6 * sqrt(N) (4,096 lists at N = 1.28M)
    ivf_nprobe: int = 8
    ivf_train_per_list: int = 16
    ivf_train_iters: int = 10
    hnsw_m: int = 32
    hnsw_ef_search: int = 64
    block_rows: int = 16_384


def default_workers() -> int:
    """Threads for the blockwise GEMM loops: the CPUs this process may use, at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return int(max(1, min(cpus, 8)))


def _as_f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def build_index(features: np.ndarray, params: KnnParams, seed: int = 0,
                on_gpu: bool | None = None) -> tuple[faiss.Index, str]:
    """A faiss index over `features`: flat up to params.exact_max points, else IVF or HNSW.

    With faiss GPU support on the active compute device, the IVF coarse quantizer is trained by
    the same seeded faiss Clustering with a GPU flat index for its assignments, and flat and IVF
    indexes are placed on the GPU unless `on_gpu` is False; HNSW has no GPU version and stays here."""
    features = _as_f32(features)
    compute = active_compute()
    on_gpu = compute.faiss_gpu if on_gpu is None else on_gpu and compute.faiss_gpu
    index, kind = _trained_index(features, params, seed, compute.faiss_gpu)
    if on_gpu and not kind.startswith("hnsw"):
        index = _index_to_gpu(index, compute.gpu_id)
        compute.ran_on_gpu("faiss_index")
    index.add(features)
    if kind.startswith("ivf"):
        index.nprobe = params.ivf_nprobe
    return index, kind


def _trained_index(features: np.ndarray, params: KnnParams, seed: int, gpu_training: bool) -> tuple[faiss.Index, str]:
    """An empty CPU index, trained when it needs training."""
    n, d = features.shape
    if n <= params.exact_max:
        return faiss.IndexFlatL2(d), "flat"
    if params.approximate == "hnsw":
        index = faiss.IndexHNSWFlat(d, params.hnsw_m)
        index.hnsw.efSearch = params.hnsw_ef_search
        return index, f"hnsw(M={params.hnsw_m},ef={params.hnsw_ef_search})"
    if params.approximate != "ivf":
        raise ValueError(f"unknown approximate index {params.approximate!r} (ivf or hnsw)")
    nlist = int(params.ivf_nlist or max(1, round(3.6 * np.sqrt(n))))
    quantizer = faiss.IndexFlatL2(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist)
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(n, size=min(n, params.ivf_train_per_list * nlist), replace=False))
    index.cp.seed = int(seed) % (2**31 - 1)
    index.cp.max_points_per_centroid = max(params.ivf_train_per_list, 1)
    index.cp.niter = params.ivf_train_iters
    index.cp.min_points_per_centroid = 1  # a deliberate small sample: no faiss warning
    if gpu_training:  # Lloyd's assignment step on the GPU (faiss IndexIVF.clustering_index)
        compute = active_compute()
        assigner = _index_to_gpu(faiss.IndexFlatL2(d), compute.gpu_id)
        index.clustering_index = assigner
        index.train(features[sample])
        index.clustering_index = None
        compute.ran_on_gpu("ivf_training")
    else:
        index.train(features[sample])
    return index, f"ivf(nlist={nlist},nprobe={params.ivf_nprobe})"


def knn(features: np.ndarray, k: int, params: KnnParams | None = None, queries: np.ndarray | None = None,
        seed: int = 0, desc: str = "k-NN") -> tuple[np.ndarray, np.ndarray, str]:
    """k nearest neighbours (squared L2) of `queries` (default: the features themselves, which
    then count themselves as their first neighbour). Returns (sq_dists, indices, index_kind)."""
    from tqdm.auto import tqdm

    params = params or KnnParams()
    features = _as_f32(features)
    queries = features if queries is None else _as_f32(queries)
    k = min(k, features.shape[0])
    compute = active_compute()
    on_gpu = compute.faiss_gpu and k <= GPU_MAX_K
    if on_gpu and features.shape[0] <= params.exact_max:  # brute force on the GPU, no index kept
        kind = "flat"
        compute.ran_on_gpu("knn")

        def search(rows):
            return _knn_gpu(rows, features, k, compute.gpu_id)
    else:
        index, kind = build_index(features, params, seed, on_gpu=on_gpu)
        if on_gpu and not kind.startswith("hnsw"):
            compute.ran_on_gpu("knn")

        def search(rows):
            return index.search(rows, k)
    dists = np.empty((len(queries), k), dtype=np.float32)
    labels = np.empty((len(queries), k), dtype=np.int64)
    blocks = list(row_blocks(len(queries), params.block_rows))
    for start, stop in tqdm(blocks, desc=desc, disable=progress_disabled() or len(blocks) < 4, leave=False):
        dists[start:stop], labels[start:stop] = search(queries[start:stop])
    missing = np.flatnonzero((labels < 0).any(axis=1))
    if len(missing) and kind.startswith("ivf"):
        # the probed inverted lists held fewer than k points: search those rows exhaustively
        # (on a CPU copy: the GPU scans at most 2,048 lists per query)
        exhaustive = _index_to_cpu(index) if on_gpu else index
        exhaustive.nprobe = exhaustive.nlist
        dists[missing], labels[missing] = exhaustive.search(queries[missing], k)
    np.maximum(dists, 0, out=dists)
    return dists, labels, kind


def knn_excluding_self(features: np.ndarray, k: int, params: KnnParams | None = None, seed: int = 0,
                       desc: str = "k-NN") -> tuple[np.ndarray, np.ndarray, str]:
    """k nearest OTHER points of every row. The row itself is removed even when exact duplicates
    tie with it at distance 0; when it is absent from the results (approximate index) the last
    column goes instead."""
    n = features.shape[0]
    k = min(k, n - 1)
    d2, idx, kind = knn(features, k + 1, params, seed=seed, desc=desc)
    is_self = idx == np.arange(n)[:, None]
    is_self[~is_self.any(axis=1), -1] = True
    keep = ~is_self
    return d2[keep].reshape(n, k), idx[keep].reshape(n, k), kind


def cached_knn_excluding_self(features: np.ndarray, k: int, cache_stem: str | None, params: KnnParams | None = None,
                              seed: int = 0, desc: str = "k-NN") -> tuple[np.ndarray, np.ndarray, str, bool]:
    """`knn_excluding_self`, read from / written to ``cache_stem + ".knn_others_k{k}.npz"`` when
    `cache_stem` is given (`SelectionContext.feature_cache_stem`) and the search is exact
    (N <= params.exact_max: the result then depends only on the features and k). Returns
    (sq_dists (N, k) float32, indices (N, k) int64, index kind, whether read from the cache)."""
    from pathlib import Path

    params = params or KnnParams()
    n = features.shape[0]
    k_eff = min(k, n - 1)
    path = Path(f"{cache_stem}.knn_others_k{k_eff}.npz") if cache_stem and n <= params.exact_max else None
    if path is None:
        d2, idx, kind = knn_excluding_self(features, k, params, seed=seed, desc=desc)
        return d2, idx, kind, False
    import fcntl

    # one process computes, concurrent ones (parallel sweep jobs) wait for it and read its file
    with open(f"{path}.lock", "a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            return _cached_knn_excluding_self(features, k, path, params, seed, desc)
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _cached_knn_excluding_self(features, k, path, params, seed, desc):
    n = features.shape[0]
    k_eff = min(k, n - 1)
    if path is not None and file_digest_ok(path):
        try:
            with np.load(path, allow_pickle=False) as stored:
                d2, idx = stored["d2"], stored["idx"]
            if d2.shape == (n, k_eff) and idx.shape == (n, k_eff):
                return d2.astype(np.float32), idx.astype(np.int64), "flat", True
        except (OSError, KeyError, ValueError):  # absent or unreadable: computed below
            pass
    d2, idx, kind = knn_excluding_self(features, k, params, seed=seed, desc=desc)
    if path is not None:
        import tempfile

        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as handle:
            np.savez(handle, d2=d2.astype(np.float32), idx=idx.astype(np.int64))
        os.replace(handle.name, path)  # atomic: a concurrent reader sees the old state or the whole file
        record_file_digest(path)
    return d2, idx, kind, False


@dataclass
class KMeansResult:
    centroids: np.ndarray   # (K, d)
    assignments: np.ndarray  # (N,) int64 in [0, K)
    sizes: np.ndarray       # (K,) members per cluster
    objective: float

    @property
    def nonempty(self) -> int:
        return int((self.sizes > 0).sum())


def kmeans(features: np.ndarray, n_clusters: int, n_iter: int = 100, seed: int = 0,
           max_points_per_centroid: int = 0, spherical: bool = False) -> KMeansResult:
    """Seeded faiss K-Means (Lloyd, random data points as initial centroids, one init).

    `max_points_per_centroid` > 0 trains on a seeded sample of that many points per cluster
    (the ImageNet presets use it: Lloyd on all 1.28M points is far too slow on a CPU); every
    point is then assigned to its nearest final centroid. 0 trains on all points.

    faiss re-seeds a centroid that becomes empty during training by splitting a large cluster,
    so no NaN centroid can appear; clusters still empty after the final assignment are reported
    through `sizes` (callers drop them or fill the budget elsewhere).
    """
    features = _as_f32(features)
    n, d = features.shape
    n_clusters = int(min(n_clusters, n))
    points_per_centroid = max_points_per_centroid if max_points_per_centroid > 0 else -(-n // n_clusters)
    km = faiss.Kmeans(d, n_clusters, niter=n_iter, seed=int(seed) % (2**31 - 1), verbose=False,
                      spherical=spherical, max_points_per_centroid=points_per_centroid,
                      min_points_per_centroid=1)
    compute = active_compute()
    if compute.faiss_gpu:
        # what Kmeans(gpu=True) does, on the chosen GPU only: the assignment index moves there
        # (same seeded sample and initial centroids; only the GPU's rounding differs)
        km.index = _index_to_gpu(km.index, compute.gpu_id)
        compute.ran_on_gpu("kmeans")
    km.train(features)
    centroids = km.centroids.copy()
    if not np.isfinite(centroids).all():  # defensive: never let a NaN centroid through
        raise FloatingPointError("K-Means produced non-finite centroids")
    index = faiss.IndexFlatL2(d)
    if compute.faiss_gpu:
        index = _index_to_gpu(index, compute.gpu_id)
    index.add(centroids)
    assignments = np.empty(n, dtype=np.int64)
    objective = 0.0
    for start, stop in row_blocks(n, 65_536):
        dist, lab = index.search(features[start:stop], 1)
        assignments[start:stop] = lab[:, 0]
        objective += float(dist.sum())
    sizes = np.bincount(assignments, minlength=n_clusters)
    return KMeansResult(centroids, assignments, sizes, objective)


def per_group_argmax(scores: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each distinct group id, the index of its highest score (ties: lowest index).
    Returns (group_ids, winner_indices), both sorted by group id."""
    order = np.lexsort((np.arange(len(scores)), -scores, groups))
    sorted_groups = groups[order]
    first = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    return sorted_groups[first], order[first]


def sq_dists_to(features_block: np.ndarray, points: np.ndarray, points_sq_norm: np.ndarray | None = None) -> np.ndarray:
    """Squared L2 distances between a block of rows (B, d) and points (P, d): a (B, P) matrix."""
    if points_sq_norm is None:
        points_sq_norm = (points.astype(np.float32) ** 2).sum(1)
    block_sq = (features_block ** 2).sum(1)
    d2 = block_sq[:, None] + points_sq_norm[None, :] - 2.0 * (features_block @ points.T)
    return np.maximum(d2, 0.0, out=d2)


def rows_per_block(n_columns: int, max_entries: int = 1 << 25) -> int:
    """Rows of a (rows x n_columns) float32 block holding at most `max_entries` (128 MB)."""
    return int(max(1, min(n_columns, max_entries // max(1, n_columns))))


def range_graph(features: np.ndarray, radius_sq: float, params: KnnParams | None = None, seed: int = 0,
                block_rows: int | None = None, desc: str = "range search",
                workers: int | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """Directed graph i -> j for every j with squared distance < radius_sq (i -> i included), in
    CSR form: `offsets` (N + 1, int64) and `targets` (int32); the out-neighbours of i are
    targets[offsets[i]:offsets[i + 1]]. Row blocks cover every row (the last, shorter one too).

    Up to `params.exact_max` points the graph is exact and built here: one GEMM per row block on
    `distance_factors` (the squared distances directly, from centred features), a
    threshold, and the row-major nonzeros are already in CSR order. Blocks run on `workers`
    threads with one BLAS thread each (about twice as fast as a faiss flat range search here).
    Above exact_max: a faiss range search over the approximate index."""
    from tqdm.auto import tqdm

    params = params or KnnParams()
    features = _as_f32(features)
    n = features.shape[0]
    compute = active_compute()
    if n <= params.exact_max:
        if compute.torch_device is not None:
            from .torch_exact import range_graph_torch

            offsets, targets = range_graph_torch(features, float(radius_sq), device=compute.torch_device)
            compute.ran_on_gpu("range_graph")
            return offsets, targets, "exact (blockwise GEMM, torch)"
        return (*_exact_range_graph(features, float(radius_sq), block_rows or rows_per_block(n), workers, desc),
                "exact (blockwise GEMM)")
    index, kind = build_index(features, params, seed, on_gpu=False)
    if hasattr(index, "nprobe"):
        index.nprobe = params.ivf_nprobe
    search = index.range_search
    if compute.faiss_gpu and not kind.startswith("hnsw"):
        gpu_index = _index_to_gpu(index, compute.gpu_id)
        gpu_index.nprobe = params.ivf_nprobe
        compute.ran_on_gpu("range_search")

        def search(rows, radius):
            return _range_search_gpu(rows, radius, gpu_index, index)
    # large blocks: faiss range search has a high per-call cost (335-row blocks ran 4x slower than 4,096)
    block_rows = block_rows or 4096
    offsets = np.zeros(n + 1, dtype=np.int64)
    chunks = []
    blocks = list(row_blocks(n, block_rows))
    for start, stop in tqdm(blocks, desc=desc, disable=progress_disabled() or len(blocks) < 8, leave=False):
        lims, _, targets = search(features[start:stop], float(radius_sq))
        chunks.append(targets.astype(np.int32))
        offsets[start + 1:stop + 1] = offsets[start] + lims[1:]
    targets = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int32)
    return offsets, targets, kind


def _exact_range_graph(features: np.ndarray, radius_sq: float, block_rows: int, workers: int | None,
                       desc: str) -> tuple[np.ndarray, np.ndarray]:
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits
    from tqdm.auto import tqdm

    n = features.shape[0]
    left, right = distance_factors(features)

    def block(span: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        start, stop = span
        dist = left[start:stop] @ right.T
        np.fill_diagonal(dist[:, start:stop], 0.0)  # every ball holds its own centre
        flat = np.flatnonzero(dist < radius_sq)
        rows = flat // n
        return np.bincount(rows, minlength=stop - start), (flat - rows * n).astype(np.int32)

    blocks = list(row_blocks(n, block_rows))
    with threadpool_limits(1), ThreadPoolExecutor(workers or default_workers()) as pool:
        results = list(tqdm(pool.map(block, blocks), total=len(blocks), desc=desc, leave=False,
                            disable=progress_disabled() or len(blocks) < 8))
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.concatenate([counts for counts, _ in results]), out=offsets[1:])
    targets = np.concatenate([t for _, t in results]) if results else np.zeros(0, dtype=np.int32)
    return offsets, targets


def nearest_other_group_sq_dist(features: np.ndarray, groups: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """For each row r in `rows`: squared L2 distance from r to the nearest point of another group
    (inf when every point shares r's group). Exact, blockwise over all N points; the columns are
    ordered by group so a row's own group is one contiguous slice to mask."""
    features = _as_f32(features)
    n = features.shape[0]
    order = np.argsort(groups, kind="stable")
    sorted_features = features[order]
    sorted_groups = groups[order]
    sq_norm = (sorted_features ** 2).sum(1)
    bounds = {int(g): (int(a), int(b)) for g, a, b in zip(*_group_ranges(sorted_groups))}
    rows = np.asarray(rows, dtype=np.int64)
    out = np.empty(len(rows), dtype=np.float32)
    for start, stop in row_blocks(len(rows), rows_per_block(n)):
        block = rows[start:stop]
        d2 = sq_dists_to(features[block], sorted_features, sq_norm)
        block_groups = groups[block]
        for g in np.unique(block_groups):
            lo, hi = bounds[int(g)]
            d2[np.flatnonzero(block_groups == g), lo:hi] = np.inf
        out[start:stop] = d2.min(axis=1)
    return out


def _group_ranges(sorted_groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    stops = np.r_[starts[1:], len(sorted_groups)]
    return sorted_groups[starts], starts, stops


class FarthestFirst:
    """k-center greedy state: the squared distance of every point to its nearest chosen center,
    O(N) memory. `add(i)` makes i a center; `next()` is the unchosen point farthest from all
    centers (ties: lowest index)."""

    def __init__(self, features: np.ndarray) -> None:
        self.features = _as_f32(features)
        self.sq_norm = (self.features ** 2).sum(1)
        self.min_sq = np.full(self.features.shape[0], np.inf, dtype=np.float32)
        self.chosen = np.zeros(self.features.shape[0], dtype=bool)

    def add(self, index: int) -> None:
        d2 = self.sq_norm + self.sq_norm[index] - 2.0 * (self.features @ self.features[index])
        np.maximum(d2, 0.0, out=d2)
        np.minimum(self.min_sq, d2, out=self.min_sq)
        self.chosen[index] = True
        self.min_sq[index] = -1.0  # never chosen again, even when every distance left is 0

    def add_many(self, indices: np.ndarray) -> None:
        indices = np.asarray(indices, dtype=np.int64)
        for start, stop in row_blocks(len(indices), rows_per_block(self.features.shape[0])):
            d2 = sq_dists_to(self.features, self.features[indices[start:stop]], self.sq_norm[indices[start:stop]])
            np.minimum(self.min_sq, d2.min(axis=1), out=self.min_sq)
        self.chosen[indices] = True
        self.min_sq[indices] = -1.0

    def next(self) -> int:
        return int(np.argmax(self.min_sq))
