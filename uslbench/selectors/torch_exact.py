"""Exact blockwise distance kernels in torch, for a GPU: the k-NN sums of the USL density and the
range graph of ProbCover.

The same tensors run on any torch device, so the CPU tests prove these functions equal to the
NumPy versions (`knn_sums.knn_sq_dist_sums`, `toolkit._exact_range_graph`); on a GPU only the
placement differs. The toolkit calls them when the active compute device has a CUDA torch device
(`toolkit.compute_device`); without a GPU the NumPy/BLAS versions stay the default.

Both work on the centred factors of `toolkit.distance_factors`, so one GEMM per tile gives the
squared distances directly, in float32 with IEEE matmuls (TF32 is switched off for the call: it
would move the sums by about 1e-3). Tiles are sized from the device's free memory.

Hand-written because no library keeps only the SUM of each row's k smallest distances: faiss's
GPU k-NN (`knn_gpu`) returns all k distances and ids per row and caps k at 2,048.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np

from .tiling import distance_factors, row_blocks

# a tile's working set is about this many float32 copies of tile_rows x (tile_rows + k):
# the distances, their concatenation with the running k smallest, and topk's workspace
_TILE_COPIES = 4
_MAX_TILE = 16_384       # wider tiles gain nothing: torch.topk is the cost, not the GEMM
_CPU_MEMORY = 512 << 20  # working memory on a CPU device
_GPU_FRACTION = 0.4      # of the free GPU memory


def memory_budget(device) -> int:
    """Bytes the kernels may use on `device`: 40% of the free memory of a CUDA device (read with
    torch.cuda.mem_get_info), 512 MiB on the CPU."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * _GPU_FRACTION)
    return _CPU_MEMORY


def tile_rows(n: int, k: int, budget_bytes: int) -> int:
    """Rows of a square tile whose working set (`_TILE_COPIES` x rows x (rows + k) float32)
    fits `budget_bytes`; between 1 and min(n, 16,384)."""
    rows = int((-k + np.sqrt(k * k + budget_bytes / _TILE_COPIES)) / 2)  # rows^2 + k rows <= budget / 16
    return int(max(1, min(n, _MAX_TILE, rows)))


@contextmanager
def ieee_matmul() -> Iterator[None]:
    """Full float32 matmuls inside (no TF32), whatever the process had set; restored after."""
    import torch

    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


def knn_sq_dist_sums_torch(features: np.ndarray, k: int, device="cpu", tile: int | None = None,
                           memory_bytes: int | None = None, stats: dict | None = None) -> np.ndarray:
    """For every row i: the sum of the k smallest squared L2 distances from i to all rows, i
    itself included at distance 0, as float64 of shape (N,). Exact; equal to
    `knn_sums.knn_sq_dist_sums` (and to `faiss.knn(x, x, k)[0].clip(0).sum(1)`) up to float32
    rounding of the distances (relative 1e-5).

    Square tiles of `tile` rows (default: sized from the free memory of `device`, see
    `memory_budget`): each tile pair (I <= J) is one GEMM, computed once and used for both sides
    (rows of I against columns J, and its transpose for the rows of J); each side keeps its running
    k smallest per row with `torch.topk` over [running | new distances]. The k values of a row are
    sorted before the float64 sum, so the result does not depend on the order of the tiles.

    Parameters
    ----------
    features : (N, d) float array
    k : int
        neighbours per row, the row itself counted (clipped to [1, N]).
    device : str or torch.device
        where the tensors live ("cpu", "cuda", "cuda:1", ...).
    tile, memory_bytes : int, optional
        rows per tile, or the memory the tiles may use (default `memory_budget(device)`).
    stats : dict, optional
        receives device, tile rows, tile count and candidates_per_row (N: every distance is seen).

    Memory on the device: the factors (2 x N x (d + 2) float32), the running k smallest
    (N x k float32) and one tile's working set."""
    import torch

    x = np.ascontiguousarray(features, dtype=np.float32)
    n = x.shape[0]
    k = int(min(max(k, 1), n))
    device = torch.device(device)
    tile = int(tile or tile_rows(n, k, memory_bytes or memory_budget(device)))
    left_np, right_np = distance_factors(x)
    spans = list(row_blocks(n, tile))
    with torch.no_grad(), ieee_matmul():
        left = torch.from_numpy(left_np).to(device)
        right = torch.from_numpy(right_np).to(device)
        nearest = torch.full((n, k), float("inf"), dtype=torch.float32, device=device)
        for a, (i0, i1) in enumerate(spans):
            for j0, j1 in spans[a:]:
                dist = left[i0:i1] @ right[j0:j1].T
                if i0 == j0:  # every row is its own nearest point, at distance 0
                    own = torch.arange(i1 - i0, device=device)
                    dist[own, own] = 0.0
                nearest[i0:i1] = _k_smallest(nearest[i0:i1], dist, k)
                if j0 != i0:
                    nearest[j0:j1] = _k_smallest(nearest[j0:j1], dist.T, k)
                del dist
        nearest.clamp_(min=0.0)
        sums = torch.sort(nearest, dim=1).values.to(torch.float64).sum(dim=1)
        result = sums.cpu().numpy()
    if stats is not None:
        stats.update(device=str(device), tile_rows=tile, tiles=len(spans), candidates_per_row=float(n))
    return result


def _k_smallest(current, new, k: int):
    """Per row, the k smallest of the running values and a new block of distances (unordered)."""
    import torch

    return torch.topk(torch.cat([current, new], dim=1), k, dim=1, largest=False, sorted=False).values


def range_graph_torch(features: np.ndarray, radius_sq: float, device="cpu", block_rows: int | None = None,
                      memory_bytes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Directed graph i -> j for every j with squared distance < radius_sq (i -> i included), in
    CSR form: `offsets` (N + 1, int64) and `targets` (int32), targets of a row ascending. The same
    graph as `toolkit._exact_range_graph` (one GEMM per row block on the centred factors, a
    threshold, the row-major nonzeros), computed on `device`; pairs within float32 rounding of
    the radius may fall on either side.

    `block_rows` rows at a time (default: sized from `memory_bytes` or the device's free memory,
    about 6 bytes per distance for the block, its mask and the hits)."""
    import torch

    x = np.ascontiguousarray(features, dtype=np.float32)
    n = x.shape[0]
    device = torch.device(device)
    budget = memory_bytes or memory_budget(device)
    block_rows = int(block_rows or max(1, min(n, 8192, budget // (6 * max(n, 1)))))
    left_np, right_np = distance_factors(x)
    counts = np.zeros(n, dtype=np.int64)
    chunks = []
    with torch.no_grad(), ieee_matmul():
        left = torch.from_numpy(left_np).to(device)
        right_t = torch.from_numpy(right_np).to(device).T
        for lo, hi in row_blocks(n, block_rows):
            dist = left[lo:hi] @ right_t
            own = torch.arange(hi - lo, device=device)
            dist[own, lo + own] = 0.0  # every ball holds its own centre
            hits = dist < radius_sq
            del dist
            counts[lo:hi] = hits.sum(dim=1).cpu().numpy()
            chunks.append(hits.nonzero(as_tuple=True)[1].to(torch.int32).cpu().numpy())  # row-major: CSR order
            del hits
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    targets = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int32)
    return offsets, targets
