"""Precision, recall, density and coverage (Naeem et al. 2020) computed in chunks.

The reference implementation (clovaai ``prdc.compute_prdc``) materialises three N x N distance matrices (about 30 GB
at 50k vs 50k). Here every quantity is accumulated over blocks of the distance matrices, so memory stays at the
features plus a few ``chunk_size^2`` blocks:

- k-NN radii: blocks of squared distances, a running top-(k+1+margin) per row, exploiting symmetry (block (i, j) with
  j >= i updates the rows of i and, transposed, the rows of j).
- precision / density / coverage / recall: one pass over real x fake blocks, comparing against the radii.

Numerics (``compute="float32"``, the default): the bulk squared distances are ``|x|^2 + |y|^2 - 2 x.y`` with a float32
matmul on mean-centred features; each float32 value ``d`` is within ``tol = (2 D + 16) u (|x|^2 + |y|^2)`` of the truth
(u = 2^-24, the standard error bound of a length-D dot product). Every decision whose float32 value lies within
``tol`` of the threshold is re-made from the float64 distance ``sum((x - y)^2)`` computed on the original features;
radii are always the float64 distances of the candidate neighbours, and a row whose candidate set cannot be proven
to hold its true k+1 nearest neighbours is recomputed fully in float64. The result therefore equals a float64
computation (and the reference, which uses float64 distances) up to exact ties. ``compute="float64"`` does the
bulk in float64 (about twice as slow) with the same logic.
"""
from __future__ import annotations

import numpy as np
import torch

PRDC_PROTOCOLS = ("standard", "authors")
_UNIT_ROUNDOFF = {torch.float32: 2.0**-24, torch.float64: 2.0**-53}
_COMPUTE_DTYPES = {"float32": torch.float32, "float64": torch.float64}


# ---- input checks and small helpers ----------------------------------------------------------------------------------


def _check_features(features, name: str) -> np.ndarray:
    """A 2-d finite numeric array, without copying it (50k x 2048 float64 is 800 MB)."""
    array = np.asarray(features)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty (N, D) array, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {array.dtype}")
    for start in range(0, array.shape[0], 4096):
        if not np.all(np.isfinite(array[start : start + 4096])):
            raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _centred(features: np.ndarray, center: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """``features - center`` cast to ``dtype``, built row-chunk by row-chunk to avoid a float64 copy."""
    out = torch.empty(features.shape, dtype=dtype)
    for start in range(0, features.shape[0], 4096):
        rows = features[start : start + 4096].astype(np.float64) - center
        out[start : start + rows.shape[0]] = torch.from_numpy(rows).to(dtype)
    return out


def _sq_norms(x: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """float64 squared row norms, chunked (a float64 copy of 50k x 2048 features would be 800 MB)."""
    out = torch.empty(x.shape[0], dtype=torch.float64)
    for start in range(0, x.shape[0], chunk):
        out[start : start + chunk] = (x[start : start + chunk].double() ** 2).sum(dim=1)
    return out


def _exact_sq_dist(a: np.ndarray, ia: np.ndarray, b: np.ndarray, ib: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """float64 ``sum((a[ia] - b[ib])^2)`` for paired index arrays, on the original (uncentred) features."""
    out = np.empty(len(ia), dtype=np.float64)
    for start in range(0, len(ia), chunk):
        sl = slice(start, start + chunk)
        diff = a[ia[sl]].astype(np.float64) - b[ib[sl]].astype(np.float64)
        out[sl] = np.einsum("ij,ij->i", diff, diff)
    return out


def _block_sq_dist(x: torch.Tensor, xx: torch.Tensor, y: torch.Tensor, yy: torch.Tensor) -> torch.Tensor:
    """Squared distances of a block in the compute dtype (``xx``, ``yy`` are float64 squared norms)."""
    d = torch.addmm(yy.to(x.dtype)[None, :], x, y.T, alpha=-2.0)
    d += xx.to(x.dtype)[:, None]
    return d


def _tolerance(dtype: torch.dtype, dim: int) -> float:
    """Relative error bound of a computed squared distance, as a multiple of ``|x|^2 + |y|^2``: about ``D u`` for
    the dot product, a few ``u`` for the norms, the additions and the rounding of the centred inputs; doubled."""
    return (2 * dim + 16) * _UNIT_ROUNDOFF[dtype]


# ---- k-NN radii ------------------------------------------------------------------------------------------------------


def knn_radii(
    features, nearest_k: int = 3, *, chunk_size: int = 4096, compute: str = "float32", margin: int = 8
) -> np.ndarray:
    """float64 distance from each point to its ``nearest_k``-th nearest other point (the point itself counts as the
    0-th, as in the reference's ``get_kth_value(distances, k + 1)``)."""
    x_np = _check_features(features, "features")
    dtype = _compute_dtype(compute)
    x = _centred(x_np, x_np.mean(axis=0, dtype=np.float64), dtype)
    return np.sqrt(_knn_radii_sq(x, _sq_norms(x), x_np, nearest_k, chunk_size=chunk_size, margin=margin))


def _knn_radii_sq(
    x: torch.Tensor, xx: torch.Tensor, x_np: np.ndarray, nearest_k: int, *, chunk_size: int, margin: int = 8
) -> np.ndarray:
    """Squared k-NN radii from centred features ``x`` (compute dtype), their float64 squared norms ``xx`` and the
    original features ``x_np`` (for the float64 re-checks)."""
    dtype = x.dtype
    n, dim = x_np.shape
    if n <= nearest_k:
        raise ValueError(f"need more than nearest_k={nearest_k} points for k-NN radii, got {n}")
    kk = min(nearest_k + 1 + margin, n)

    best_vals = torch.full((n, kk), float("inf"), dtype=dtype)
    best_idx = torch.full((n, kk), -1, dtype=torch.int64)

    def merge(rows: slice, vals: torch.Tensor, cols_offset: int) -> None:
        m = min(kk, vals.shape[1])
        v, i = torch.topk(vals, m, dim=1, largest=False, sorted=False)
        v = torch.cat([best_vals[rows], v], dim=1)
        i = torch.cat([best_idx[rows], i + cols_offset], dim=1)
        v2, j = torch.topk(v, kk, dim=1, largest=False, sorted=False)
        best_vals[rows] = v2
        best_idx[rows] = torch.gather(i, 1, j)

    starts = list(range(0, n, chunk_size))
    for a, sa in enumerate(starts):
        ra = slice(sa, min(sa + chunk_size, n))
        for sb in starts[a:]:
            rb = slice(sb, min(sb + chunk_size, n))
            d = _block_sq_dist(x[ra], xx[ra], x[rb], xx[rb])
            merge(ra, d, sb)
            if sb != sa:
                merge(rb, d.T, sa)

    # The radius is the float64 distance of the (k+1)-th nearest neighbour. Only candidates whose float32 value is
    # within 2 tol of the float32 (k+1)-th value can be it; those below the band are surely nearer, so the radius is
    # the (k - below)-th smallest float64 distance in the band (usually a band of one).
    vals, order = torch.sort(best_vals.double(), dim=1)
    idx = torch.gather(best_idx, 1, order).numpy()
    vals = vals.numpy()
    tol = 2.0 * _tolerance(dtype, dim) * (xx.numpy() + xx.max().item())
    lo, hi = vals[:, nearest_k] - tol, vals[:, nearest_k] + tol
    below = (vals < lo[:, None]).sum(axis=1)
    band = (vals >= lo[:, None]) & (vals <= hi[:, None])
    rows, slots = np.nonzero(band)
    exact = np.full((n, kk), np.inf)
    exact[rows, slots] = _exact_sq_dist(x_np, rows, x_np, idx[rows, slots])
    exact.sort(axis=1)
    radii_sq = exact[np.arange(n), nearest_k - below]

    # rows whose candidate set might miss a true neighbour (band reaching the last candidate): full float64 row
    if kk < n:
        unsure = np.nonzero(vals[:, -1] <= hi)[0]
        for i in unsure:
            d = _exact_sq_dist(x_np, np.full(n, i), x_np, np.arange(n))
            radii_sq[i] = np.partition(d, nearest_k)[nearest_k]
    return radii_sq


def _compute_dtype(compute: str) -> torch.dtype:
    if compute not in _COMPUTE_DTYPES:
        raise ValueError(f"compute must be one of {sorted(_COMPUTE_DTYPES)}, got {compute!r}")
    return _COMPUTE_DTYPES[compute]


# ---- precision, recall, density, coverage ----------------------------------------------------------------------------


def prdc(
    real_features,
    fake_features,
    nearest_k: int = 3,
    *,
    chunk_size: int = 4096,
    compute: str = "float32",
) -> dict[str, float]:
    """Precision, recall, density, coverage of ``fake_features`` against ``real_features`` (full sets, k-NN with
    ``nearest_k``), equal to ``prdc.compute_prdc`` (clovaai) but in O(chunk_size^2) extra memory."""
    real_np = _check_features(real_features, "real_features")
    fake_np = _check_features(fake_features, "fake_features")
    if real_np.shape[1] != fake_np.shape[1]:
        raise ValueError(
            f"feature dimensions differ: real_features {real_np.shape}, fake_features {fake_np.shape}"
        )
    if nearest_k < 1:
        raise ValueError(f"nearest_k must be >= 1, got {nearest_k}")
    dtype = _compute_dtype(compute)
    dim = real_np.shape[1]
    # both sets centred on the real mean (distances are translation invariant; small norms keep float32 accurate)
    center = real_np.mean(axis=0, dtype=np.float64)
    real = _centred(real_np, center, dtype)
    fake = _centred(fake_np, center, dtype)
    rr, ff = _sq_norms(real), _sq_norms(fake)
    r_real_sq = torch.from_numpy(_knn_radii_sq(real, rr, real_np, nearest_k, chunk_size=chunk_size))
    r_fake_sq = torch.from_numpy(_knn_radii_sq(fake, ff, fake_np, nearest_k, chunk_size=chunk_size))
    rel_tol = _tolerance(dtype, dim)

    fake_in_count = torch.zeros(len(fake_np), dtype=torch.int64)  # real balls containing each fake point
    real_covered = torch.zeros(len(real_np), dtype=torch.bool)  # real balls containing some fake point
    real_in_fake = torch.zeros(len(real_np), dtype=torch.bool)  # real points inside some fake ball

    for sa in range(0, len(real_np), chunk_size):
        ra = slice(sa, min(sa + chunk_size, len(real_np)))
        for sb in range(0, len(fake_np), chunk_size):
            rb = slice(sb, min(sb + chunk_size, len(fake_np)))
            d = _block_sq_dist(real[ra], rr[ra], fake[rb], ff[rb])
            # tolerance per row (real ball test) and per column (fake ball test), bounding |x|^2 + |y|^2
            tol_rows = rel_tol * (rr[ra] + ff[rb].max())
            tol_cols = rel_tol * (rr[ra].max() + ff[rb])
            in_real = _inside(d, r_real_sq[ra][:, None], tol_rows[:, None], real_np, fake_np, sa, sb)
            in_fake = _inside(d, r_fake_sq[rb][None, :], tol_cols[None, :], real_np, fake_np, sa, sb)
            fake_in_count[rb] += in_real.sum(dim=0)
            real_covered[ra] |= in_real.any(dim=1)
            real_in_fake[ra] |= in_fake.any(dim=1)

    return {
        "precision": float((fake_in_count > 0).double().mean()),
        "recall": float(real_in_fake.double().mean()),
        "density": float(fake_in_count.double().sum() / (nearest_k * len(fake_np))),
        "coverage": float(real_covered.double().mean()),
    }


def _inside(
    d: torch.Tensor,
    radius_sq: torch.Tensor,
    tol: torch.Tensor,
    real_np: np.ndarray,
    fake_np: np.ndarray,
    row_offset: int,
    col_offset: int,
) -> torch.Tensor:
    """``true_distance < radius`` for a block: sure decisions from ``d``, unsure ones (within ``tol`` of the radius)
    re-made in float64 on the original features."""
    lo = (radius_sq - tol).to(d.dtype)
    hi = (radius_sq + tol).to(d.dtype)
    inside = d < lo
    unsure = (d >= lo) & (d <= hi)
    if unsure.any():
        i, j = torch.nonzero(unsure, as_tuple=True)
        exact = _exact_sq_dist(real_np, i.numpy() + row_offset, fake_np, j.numpy() + col_offset)
        r = radius_sq.expand_as(d)[i, j].numpy()
        inside[i, j] = torch.from_numpy(exact < r)
    return inside


def prdc_with_protocol(
    real_features,
    fake_features,
    nearest_k: int = 3,
    protocol: str = "standard",
    *,
    num_splits: int = 5,
    split_size: int = 10_000,
    split_seed: int | None = 0,
    chunk_size: int = 4096,
    compute: str = "float32",
) -> dict[str, float]:
    """PRDC under a named protocol.

    - ``standard``: all real against all generated features (:func:`prdc`).
    - ``authors``: the CAD authors' evaluation, ``num_splits`` consecutive splits of ``split_size`` real vs
      ``split_size`` generated features, metrics averaged over splits. With fewer than ``num_splits * split_size``
      features on either side, the split size becomes ``min(n_real, n_fake) // num_splits`` (splits stay even; the
      remainder is left out). Both sets are first permuted with ``np.random.default_rng(split_seed)`` (None: keep
      the given order), so samples stored class by class do not give class-biased splits.
    """
    if protocol == "standard":
        return prdc(real_features, fake_features, nearest_k, chunk_size=chunk_size, compute=compute)
    if protocol != "authors":
        raise ValueError(f"unknown PRDC protocol {protocol!r}; choose one of {PRDC_PROTOCOLS}")
    real_np = _check_features(real_features, "real_features")
    fake_np = _check_features(fake_features, "fake_features")
    size = authors_split_size(len(real_np), len(fake_np), num_splits=num_splits, split_size=split_size)
    if size <= nearest_k:
        raise ValueError(
            f"the authors' protocol needs splits larger than nearest_k={nearest_k}: {len(real_np)} real and "
            f"{len(fake_np)} generated features give splits of {size}"
        )
    if split_seed is None:
        real_order, fake_order = np.arange(len(real_np)), np.arange(len(fake_np))
    else:
        rng = np.random.default_rng(split_seed)
        real_order, fake_order = rng.permutation(len(real_np)), rng.permutation(len(fake_np))
    per_split = []
    for s in range(num_splits):  # gather one split at a time: no copy of the whole sets
        rows = slice(s * size, (s + 1) * size)
        per_split.append(
            prdc(
                real_np[np.sort(real_order[rows])],
                fake_np[np.sort(fake_order[rows])],
                nearest_k,
                chunk_size=chunk_size,
                compute=compute,
            )
        )
    return {key: float(np.mean([m[key] for m in per_split])) for key in per_split[0]}


def authors_split_size(n_real: int, n_fake: int, *, num_splits: int = 5, split_size: int = 10_000) -> int:
    return min(split_size, n_real // num_splits, n_fake // num_splits)
