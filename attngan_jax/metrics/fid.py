"""Fréchet Inception Distance: streaming feature statistics and the distance itself (float64).

``FID = ||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))`` (Heusel et al., 2017). The distance
follows pytorch-fid / TTUR ``calculate_frechet_distance`` exactly: ``scipy.linalg.sqrtm`` of the
product; if the result is not finite, retry with ``eps * I`` added to both covariances; a complex
root whose diagonal has an imaginary part above 1e-3 is an error, otherwise its real part is used.

:class:`FeatureStats` keeps ``n``, ``sum(x - shift)`` (D,) and ``sum((x - shift)(x - shift)^T)``
(D, D) in float64, where ``shift`` (D,) is the mean of the first batch (a constant shift keeps the
one-pass covariance free of cancellation when features have a large mean). The covariance is the
unbiased one of ``np.cov(features, rowvar=False)``. Memory is ``2D + D^2`` numbers whatever N is.

Reference statistics files (DM-GAN ``bird_val.npz``/``coco_val.npz``, DF-GAN/GALIP
``bird_val256_FIDK0.npz``...) are ``.npz`` with ``mu`` (D,) and ``sigma`` (D, D); which Inception
made them matters (reference §14.3: PyTorch-FID and TF-FID are not interchangeable).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Iterable

import numpy as np
from scipy import linalg

from attngan_jax.errors import InputError, InputKeyError, MissingInputError
from attngan_jax.runtime import atomic


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    Args:
        mu1: (D,) mean of the generated features.
        sigma1: (D, D) covariance of the generated features.
        mu2: (D,) reference mean.
        sigma2: (D, D) reference covariance.
        eps: diagonal offset used when ``sqrtm(sigma1 @ sigma2)`` is not finite
            (pytorch-fid's 1e-6).

    Returns:
        the distance (float).

    Raises:
        ValueError: shapes differ, or the square root has a significant imaginary component.
    """
    mu1, mu2 = (
        np.atleast_1d(np.asarray(mu1, np.float64)),
        np.atleast_1d(np.asarray(mu2, np.float64)),
    )
    sigma1, sigma2 = (
        np.atleast_2d(np.asarray(sigma1, np.float64)),
        np.atleast_2d(np.asarray(sigma2, np.float64)),
    )
    if mu1.shape != mu2.shape:
        raise ValueError(f"mean vectors have different lengths: {mu1.shape} vs {mu2.shape}")
    if sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(
            f"covariances {sigma1.shape}, {sigma2.shape} do not match the means {mu1.shape}"
        )
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps  # pytorch-fid: singular product -> regularise
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(
                f"sqrtm(sigma1 @ sigma2) has imaginary component {np.max(np.abs(covmean.imag))}"
            )
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


class FeatureStats:
    """Streaming mean/covariance of (N, D) features in float64 (constant memory).

    Args:
        dim: feature dimension D (2048 for Inception pool3).
    """

    def __init__(self, dim: int):
        self.dim = dim
        self.n = 0
        self.shift = np.zeros(dim, np.float64)
        self.sum = np.zeros(dim, np.float64)
        self.sum_outer = np.zeros((dim, dim), np.float64)

    def update(self, features: np.ndarray) -> None:
        """Adds a batch of features (B, D)."""
        x = np.asarray(features, np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected (B, {self.dim}) features, got {x.shape}")
        if len(x) == 0:
            return
        if self.n == 0:
            self.shift = x.mean(axis=0)
        x = x - self.shift  # (B, D)
        self.n += len(x)
        self.sum += x.sum(axis=0)
        self.sum_outer += x.T @ x  # (D, D)

    def merge(self, other: FeatureStats) -> None:
        """Adds another accumulator's samples (e.g. from another host) into this one."""
        if other.dim != self.dim:
            raise ValueError(f"cannot merge stats of dimension {other.dim} into {self.dim}")
        if other.n == 0:
            return
        if self.n == 0:
            self.shift = other.shift.copy()
        d = other.shift - self.shift  # re-express the other's sums around this shift
        self.sum_outer += (
            other.sum_outer
            + np.outer(d, other.sum)
            + np.outer(other.sum, d)
            + other.n * np.outer(d, d)
        )
        self.sum += other.sum + other.n * d
        self.n += other.n

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """``(mu (D,), sigma (D, D))``; sigma is unbiased (divides by n - 1) like ``np.cov``."""
        if self.n < 2:
            raise ValueError(f"need at least 2 samples for a covariance, have {self.n}")
        m = self.sum / self.n  # mean of the shifted features
        cov = (self.sum_outer - self.n * np.outer(m, m)) / (self.n - 1)
        return self.shift + m, (cov + cov.T) / 2.0

    @property
    def nbytes(self) -> int:
        """Bytes held by the accumulator's arrays (constant in N)."""
        return self.shift.nbytes + self.sum.nbytes + self.sum_outer.nbytes

    def save_npz(self, path: str) -> None:
        """Writes ``mu``/``sigma`` to ``path`` atomically (DM-GAN/DF-GAN reference-stats layout)."""
        mu, sigma = self.mean_cov()
        save_stats_npz(path, mu, sigma)


def save_stats_npz(path: str, mu: np.ndarray, sigma: np.ndarray) -> None:
    """Writes ``{mu, sigma}`` to ``path`` atomically (``runtime.atomic``)."""
    with atomic.replacing(path, "wb") as f:
        np.savez(f, mu=mu, sigma=sigma)


def load_reference_stats(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Reads ``mu`` (D,) and ``sigma`` (D, D) from a reference ``.npz`` (DM-GAN / DF-GAN layout).

    Raises:
        MissingInputError: no such file (a ``FileNotFoundError``).
        InputKeyError: ``mu`` or ``sigma`` is missing (the message lists the keys found).
        InputError: not an ``.npz``, or the shapes do not form a (D,) mean and (D, D) covariance.
    """
    if not os.path.isfile(path):
        raise MissingInputError(f"reference FID statistics not found: {path}")
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise InputError(f"{path}: not a readable .npz of FID statistics ({e})") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise InputError(f"{path}: a single array, not an .npz with 'mu' and 'sigma'")
    with z:
        keys = sorted(z.files)
        if "mu" not in keys or "sigma" not in keys:
            raise InputKeyError(
                f"{path}: expected arrays 'mu' (D,) and 'sigma' (D, D) (the DM-GAN/DF-GAN layout), "
                f"found keys {keys}"
            )
        mu, sigma = np.asarray(z["mu"], np.float64), np.asarray(z["sigma"], np.float64)
    if mu.ndim != 1 or sigma.shape != (mu.size, mu.size):
        raise InputError(
            f"{path}: 'mu' {mu.shape} and 'sigma' {sigma.shape} are not (D,) and (D, D)"
        )
    return mu, sigma


def stats_from_batches(
    feature_fn: Callable[[np.ndarray], np.ndarray], batches: Iterable[np.ndarray], dim: int = 2048
) -> FeatureStats:
    """Streams image batches through any feature function (e.g. a jitted pytorch-fid InceptionV3).

    Args:
        feature_fn: (B, H, W, 3) images -> (B, D) features.
        batches: iterable of image batches.
        dim: D.

    Returns:
        the filled :class:`FeatureStats`.
    """
    stats = FeatureStats(dim)
    for batch in batches:
        stats.update(np.asarray(feature_fn(batch)))
    return stats


def fid_against_reference(stats: FeatureStats, reference_npz: str) -> float:
    """FID of accumulated features against a reference ``.npz`` (``mu``, ``sigma``)."""
    mu, sigma = stats.mean_cov()
    mu_ref, sigma_ref = load_reference_stats(reference_npz)
    return frechet_distance(mu, sigma, mu_ref, sigma_ref)
