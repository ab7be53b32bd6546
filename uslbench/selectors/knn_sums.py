"""Exact sums of the k smallest squared L2 distances of every row: the USL density, fast on a CPU.

USL's density needs only the SUM of each row's k smallest squared distances (self included), not
which points they are. `faiss.knn` at N = 50,000, d = 128, k = 400 spends 10-14 s on this 2-core
machine, much of it keeping 400-entry result sets for every row; this module computes every
distance once and keeps only what can matter (measured with `python cli.py perf selectors`:
about 4.5 s on clustered features, about 11 s on one structureless Gaussian, its worst case).

Algorithm (exact: only the rounding of the floating-point operations differs from faiss):

1. Order. A seeded coarse faiss K-Means with about N / block_rows cells; rows are sorted by cell
   and the blocks follow cell boundaries (small cells merged, large ones split), so a block holds
   most of the neighbours of its rows.
2. Bounds. For each diagonal block, the squared distances among its rows; tau_i = the k-th
   smallest of row i there. Those are k real points of the pool, so tau_i >= the true k-th
   distance of row i. The k smallest entries of the row within the block are kept; every entry
   left out is >= tau_i, so it can only tie with the k-th nearest, never change the sum. Rows
   are then sorted by tau within their block.
3. Off-diagonal block pairs (I < J), each computed once and used for both sides. One GEMM on
   augmented factors [x, |x|^2 - tau/2, 1] . [-2y, 1, |y|^2 - tau/2] gives
   d_ij - (tau_i + tau_j) / 2. An entry can matter to i or j only if d_ij <= max(tau_i, tau_j),
   i.e. if that value is <= |tau_i - tau_j| / 2, which is <= (max tau - min tau) / 2 over a
   tile of rows and columns; since both are sorted by tau the tiles' ranges are narrow, and one
   scalar comparison per tile filters the GEMM output. The survivors are tested exactly against
   each side's current bound.
4. Merging. A block's candidates are merged into its running k smallest per row whenever they
   exceed k per row (bounded memory; the bound of every row then tightens to the k-th smallest
   seen so far), and once more at the end. The k values of each row are sorted before they are
   summed, so the result does not depend on the order in which threads delivered them.

Block pairs are processed by `workers` threads, BLAS limited to one thread each, `chunk_rows`
rows at a time. Memory: one chunk_rows x block float32 matrix per worker (blocks have at most
1.5 x block_rows rows), k values per row, and at most k more candidates per row: about 0.3 GB
at N = 50,000, k = 400 with 2 workers, 0.5 GB in the worst case above.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..utils import progress_disabled
from .toolkit import active_compute, default_workers, distance_factors, kmeans, row_blocks

# Slack on the filters: keeping a few more candidates never changes the result, while rounding
# in the folded GEMM must never drop one of the k nearest.
_SLACK = 1e-5


def plan_blocks(cells: np.ndarray, k: int, block_rows: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Row order (sorted by cell) and contiguous (start, stop) blocks in that order. Consecutive
    cells are merged until a block holds at least max(2k, block_rows / 2) rows; larger groups are
    split into equal parts of at most 1.5 x block_rows rows, so every block has at least k rows
    (the bound of step 2 needs them) as long as block_rows >= 4k."""
    order = np.argsort(cells, kind="stable")
    sizes = np.bincount(cells)
    n = len(cells)
    minimum = max(2 * k, block_rows // 2)
    blocks: list[tuple[int, int]] = []
    start = pending_start = 0
    for size in sizes[sizes > 0]:
        start += int(size)
        if start - pending_start < minimum and start < n:
            continue
        parts = int(np.ceil((start - pending_start) / (1.5 * block_rows)))
        edges = np.linspace(pending_start, start, parts + 1).round().astype(int)
        blocks += list(zip(edges[:-1].tolist(), edges[1:].tolist()))
        pending_start = start
    if len(blocks) > 1 and blocks[-1][1] - blocks[-1][0] < minimum:
        last = blocks.pop()
        blocks[-1] = (blocks[-1][0], last[1])
    return order, blocks


class _Block:
    """One block's running state: its k smallest values per row so far (`nearest`, (rows, k)) and
    the off-diagonal candidates not yet merged into them."""

    def __init__(self, start: int, stop: int) -> None:
        self.start, self.stop = start, stop
        self.lock = threading.Lock()
        self.nearest: np.ndarray | None = None
        self.pending: list[tuple[np.ndarray, np.ndarray]] = []
        self.pending_count = 0
        self.tau: np.ndarray | None = None  # per row: the k-th smallest value seen so far
        self.merges = 0


def knn_sq_dist_sums(features: np.ndarray, k: int, block_rows: int = 6000, chunk_rows: int = 512,
                     segment_columns: int = 1024, workers: int | None = None, seed: int = 0, desc: str = "exact k-NN sums",
                     stats: dict | None = None) -> np.ndarray:
    """For every row i: the sum of the k smallest squared L2 distances from i to all rows, i
    itself included (distance 0), as float64 of shape (N,). Exact; equal to
    `faiss.knn(x, x, k)[0].clip(0).sum(1)` up to float rounding (relative 1e-6), and bitwise
    the same for any number of workers. `stats`, when given, receives the block count, the
    workers, the entries per row that passed the first filter and the number of merges.

    On a compute device with a CUDA torch device (`toolkit.compute_device`) the sums come from
    `torch_exact.knn_sq_dist_sums_torch` on that GPU instead (same result to float rounding)."""
    from threadpoolctl import threadpool_limits
    from tqdm.auto import tqdm

    compute = active_compute()
    if compute.torch_device is not None:
        from .torch_exact import knn_sq_dist_sums_torch

        sums = knn_sq_dist_sums_torch(features, k, device=compute.torch_device, stats=stats)
        compute.ran_on_gpu("knn_sums")
        return sums

    x = np.ascontiguousarray(features, dtype=np.float32)
    n, d = x.shape
    k = int(min(max(k, 1), n))
    block_rows = int(max(block_rows, 4 * k))
    workers = workers or default_workers()
    n_cells = max(1, round(n / block_rows))
    if n_cells > 1:
        cells = kmeans(x, n_cells, n_iter=10, seed=seed, max_points_per_centroid=256).assignments
    else:
        cells = np.zeros(n, dtype=np.int64)
    order, spans = plan_blocks(cells, k, block_rows)
    blocks = [_Block(start, stop) for start, stop in spans]
    left, right = distance_factors(x[order])  # [x, |x|^2, 1] and [-2y, 1, |y|^2], centred
    tau0 = np.empty(n, dtype=np.float32)  # the bounds from the diagonal blocks, folded into the GEMMs
    row_dtype = np.int16 if max(b.stop - b.start for b in blocks) < 2**15 else np.int32
    examined = np.zeros(len(blocks) * len(blocks), dtype=np.int64)

    def diagonal(block: _Block) -> None:
        start, stop = block.start, block.stop
        block.nearest = np.empty((stop - start, k), dtype=np.float32)
        for lo, hi in row_blocks(stop, chunk_rows, start):
            dist = left[lo:hi] @ right[start:stop].T
            dist.partition(k - 1, axis=1)
            tau0[lo:hi] = dist[:, k - 1]
            block.nearest[lo - start:hi - start] = dist[:, :k]  # the k smallest within the block
        block.tau = tau0[start:stop].copy()  # tightened as candidates are merged

    def merge(block: _Block) -> None:
        """Fold the pending candidates into `nearest` (caller holds the lock); the bound of
        each row becomes the k-th smallest seen so far, which only ever shrinks."""
        if not block.pending:
            return
        rows = np.concatenate([r for r, _ in block.pending])
        values = np.concatenate([v for _, v in block.pending])
        block.pending, block.pending_count = [], 0
        block.merges += 1
        by_row = np.argsort(rows, kind="stable")
        block.nearest = _merge_k_smallest(block.nearest, rows[by_row], values[by_row])
        block.tau = block.nearest.max(axis=1)

    def offer(block: _Block, rows: np.ndarray, values: np.ndarray) -> None:
        keep = values <= block.tau[rows] + _SLACK
        with block.lock:
            block.pending.append((rows[keep].astype(row_dtype), values[keep]))
            block.pending_count += int(keep.sum())
            if block.pending_count > k * (block.stop - block.start):  # bounded memory: k extra per row
                merge(block)

    def pair(bi: int, bj: int) -> None:
        first, second = blocks[bi], blocks[bj]
        width = second.stop - second.start
        t0_j = tau0[second.start:second.stop]
        for lo, hi in row_blocks(first.stop, chunk_rows, first.start):
            t0_i = tau0[lo:hi]
            folded = left[lo:hi] @ right[second.start:second.stop].T  # d_ij - (tau_i + tau_j) / 2
            hit_rows, hit_columns = [], []
            for c0, c1 in row_blocks(width, segment_columns):  # rows and columns ascend in tau0
                spread = (max(t0_i[-1], t0_j[c1 - 1]) - min(t0_i[0], t0_j[c0])) / 2
                a, b = np.divmod(np.flatnonzero(folded[:, c0:c1] <= spread + _SLACK), c1 - c0)
                hit_rows.append(a)
                hit_columns.append(b + c0)
            a, b = np.concatenate(hit_rows), np.concatenate(hit_columns)
            values = folded.ravel()[a * width + b] + (t0_i[a] + t0_j[b]) / 2
            examined[bi * len(blocks) + bj] += len(a)
            offer(first, a + (lo - first.start), values)
            offer(second, b, values)

    def finish(block: _Block) -> np.ndarray:
        with block.lock:
            merge(block)
        # sorted before summing, so the sum never depends on the order candidates arrived in
        nearest = np.sort(np.maximum(block.nearest, 0.0), axis=1)
        block.nearest = None
        return nearest.sum(axis=1, dtype=np.float64)

    pairs = [(i, j) for i in range(len(blocks)) for j in range(i + 1, len(blocks))]
    with threadpool_limits(1), ThreadPoolExecutor(workers) as pool, \
            tqdm(total=2 * len(blocks) + len(pairs), desc=desc, leave=False,
                 disable=progress_disabled() or len(pairs) < 4) as bar:
        for _ in pool.map(diagonal, blocks):
            bar.update()
        for block in blocks:  # rows ascending in tau0 within each block: narrow tiles for the filter
            rows = slice(block.start, block.stop)
            by_bound = np.argsort(tau0[rows], kind="stable")
            for array in (order, left, right, tau0):
                array[rows] = array[rows][by_bound]
            block.nearest, block.tau = block.nearest[by_bound], block.tau[by_bound]
        left[:, d] -= tau0 / 2  # fold the bounds into the factors for the off-diagonal pairs
        right[:, d + 1] -= tau0 / 2
        for _ in pool.map(lambda p: pair(*p), pairs):
            bar.update()
        sums = np.empty(n, dtype=np.float64)
        for block, block_sums in zip(blocks, pool.map(finish, blocks)):
            sums[block.start:block.stop] = block_sums
            bar.update()
    result = np.empty(n, dtype=np.float64)
    result[order] = sums
    if stats is not None:
        stats.update(blocks=len(blocks), largest_block=max(b.stop - b.start for b in blocks), workers=workers,
                     candidates_per_row=float(k + 2 * examined.sum() / n),
                     merges=int(sum(b.merges for b in blocks)))
    return result


def _merge_k_smallest(nearest: np.ndarray, rows: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per row: the k smallest among its k `nearest` values and its entries of the (rows, values)
    list, sorted by row; returned as a new (n_rows, k) array in no particular order within a row.
    The list goes into a padded matrix beside `nearest` for one vectorised partition; the few
    rows longer than the padding are handled one by one."""
    n_rows, k = nearest.shape
    counts = np.bincount(rows, minlength=n_rows)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    width = int(min(counts.max(), max(k // 2, np.quantile(counts, 0.99))))
    position = np.arange(len(rows)) - offsets[rows]
    inside = position < width
    padded = np.full((n_rows, k + width), np.inf, dtype=np.float32)
    padded[:, :k] = nearest
    padded[rows[inside], k + position[inside]] = values[inside]
    padded.partition(k - 1, axis=1)
    merged = padded[:, :k].copy()
    for i in np.flatnonzero(counts > width):
        row = np.concatenate([nearest[i], values[offsets[i]:offsets[i] + counts[i]]])
        row.partition(k - 1)
        merged[i] = row[:k]
    return merged
