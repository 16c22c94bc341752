"""Inception Score (Salimans et al., 2016), batch and streaming, in float64.

``IS = exp(E_x KL(p(y|x) || p(y)))`` computed separately on ``splits`` consecutive parts of the
predictions, reported as mean and (population) std over the parts: the protocol of
openai/improved-gan ``inception_score/model.py`` and of StackGAN's ``inception_score.py``
(reference §14.1). Part ``i`` holds rows ``[i*N//splits, (i+1)*N//splits)``.

CUB/StackGAN convention (``stackgan_convention``/the options below):

* the fine-tuned TF-slim Inception has 51 logits; logit 0 is the unused background class and is
  dropped *before* the softmax (``drop_background=True``);
* images go through the network in batches of 64 and only ``floor(N/64)*64`` of them are used
  (``full_batches_of=64``); StackGAN also shuffles the image list first (``shuffle_seed``), which
  changes which images are dropped and how they fall into the splits.

:class:`InceptionScoreAccumulator` streams: the split of every row is fixed up front from the total
``num_samples`` and the arrival order, and per split it keeps only ``n``, ``sum_x p(y|x)`` (C,) and
``sum_x sum_y p log p``. Since ``sum_y p(y|x) log p(y)`` is linear in ``p(y|x)``,
``E_x KL = sum_p_log_p / n - sum_y p(y) log p(y)`` with ``p(y) = sum_p / n``: exactly the batch
formula, rearranged (agreement to ~1e-12). Memory: ``splits * (C + 2)`` numbers for any N.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
from scipy.special import log_softmax, xlogy


def class_probabilities(
    probs_or_logits: np.ndarray, from_logits: bool, drop_background: bool = False
) -> np.ndarray:
    """Rows of ``p(y|x)`` in float64.

    Args:
        probs_or_logits: (N, C) probabilities, or logits when ``from_logits``.
        from_logits: apply a float64 softmax.
        drop_background: drop column 0 before the softmax (StackGAN's 51-way CUB model ->
            50 classes). Only meaningful with logits.

    Returns:
        (N, C') float64 probabilities (C' = C - 1 when dropping the background).
    """
    x = np.asarray(probs_or_logits, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected (N, C) predictions, got shape {x.shape}")
    if drop_background:
        if not from_logits:
            raise ValueError(
                "drop_background drops a logit before the softmax: pass logits (from_logits=True)"
            )
        x = x[:, 1:]  # (N, C-1)
    return np.exp(log_softmax(x, axis=1)) if from_logits else x


def split_bounds(n: int, splits: int) -> np.ndarray:
    """Row boundaries of the splits: ``[i*n//splits for i in 0..splits]`` (splits + 1,)."""
    return np.array([i * n // splits for i in range(splits + 1)], dtype=np.int64)


def _scores_from_sums(
    counts: np.ndarray, sum_p: np.ndarray, sum_plogp: np.ndarray
) -> tuple[float, float]:
    """(splits,), (splits, C), (splits,) -> (mean, std) of exp(E_x KL) over splits."""
    if np.any(counts == 0):
        raise ValueError(
            f"every split needs at least one sample (per-split counts {counts.tolist()})"
        )
    p_y = sum_p / counts[:, None]  # (splits, C) marginal p(y) of each split
    mean_kl = sum_plogp / counts - xlogy(p_y, p_y).sum(axis=1)  # E_x KL(p(y|x) || p(y))
    scores = np.exp(mean_kl)
    return float(np.mean(scores)), float(np.std(scores))


def inception_score(
    probs_or_logits: np.ndarray,
    splits: int = 10,
    from_logits: bool = False,
    drop_background: bool = False,
    full_batches_of: int | None = None,
    shuffle_seed: int | None = None,
) -> tuple[float, float]:
    """Inception Score of a set of predictions.

    Args:
        probs_or_logits: (N, C) class probabilities p(y|x) (or logits with ``from_logits``).
        splits: number of consecutive parts (10 in every published protocol).
        from_logits: inputs are logits; softmax in float64.
        drop_background: StackGAN CUB: drop logit 0 before the softmax.
        full_batches_of: StackGAN: keep only the first ``floor(N/b)*b`` rows (after shuffling).
        shuffle_seed: shuffle the rows first with ``np.random.default_rng(seed).permutation``
            (StackGAN shuffles; None keeps the given order).

    Returns:
        ``(mean, std)`` of ``exp(mean_x KL(p(y|x) || p(y)))`` over the splits.
    """
    p = class_probabilities(probs_or_logits, from_logits, drop_background)  # (N, C)
    if shuffle_seed is not None:
        p = p[np.random.default_rng(shuffle_seed).permutation(len(p))]
    if full_batches_of:
        p = p[: len(p) // full_batches_of * full_batches_of]
    b = split_bounds(len(p), splits)
    counts = np.diff(b).astype(np.float64)
    sum_p = np.stack([p[b[i] : b[i + 1]].sum(axis=0) for i in range(splits)])  # (splits, C)
    sum_plogp = np.array(
        [xlogy(p[b[i] : b[i + 1]], p[b[i] : b[i + 1]]).sum() for i in range(splits)]
    )
    return _scores_from_sums(counts, sum_p, sum_plogp)


class InceptionScoreAccumulator:
    """Streaming Inception Score; splits fixed up front by ``num_samples`` and the arrival order.

    Row ``j`` (0-based, counted over all ``update`` calls) goes to split ``i`` with
    ``i*N//splits <= j < (i+1)*N//splits`` where ``N`` is the number of rows used; the result equals
    :func:`inception_score` on the concatenated rows. With ``full_batches_of=b``, ``N =
    floor(num_samples/b)*b`` and rows past ``N`` are ignored (StackGAN's CUB protocol).

    Args:
        num_samples: total rows that will be fed.
        num_classes: C of the probabilities after ``drop_background``.
        splits: number of splits.
        from_logits: rows are logits (float64 softmax).
        drop_background: drop logit 0 before the softmax.
        full_batches_of: use only ``floor(num_samples/b)*b`` rows.
    """

    def __init__(
        self,
        num_samples: int,
        num_classes: int,
        splits: int = 10,
        from_logits: bool = False,
        drop_background: bool = False,
        full_batches_of: int | None = None,
    ):
        self.num_used = (
            num_samples // full_batches_of * full_batches_of if full_batches_of else num_samples
        )
        if self.num_used < splits:
            raise ValueError(f"{self.num_used} samples cannot fill {splits} splits")
        self.num_samples, self.splits = num_samples, splits
        self.from_logits, self.drop_background = from_logits, drop_background
        self.bounds = split_bounds(self.num_used, splits)  # (splits + 1,)
        self.sum_p = np.zeros((splits, num_classes), np.float64)
        self.sum_plogp = np.zeros(splits, np.float64)
        self.seen = 0

    def update(self, probs_or_logits: np.ndarray, start: int | None = None) -> None:
        """Adds a batch of rows (B, C): rows ``start, start + 1, ...`` (default: arrival order).

        ``start`` lets several accumulators (one per process) each take a share of the rows;
        :meth:`merge` then adds them up.
        """
        p = class_probabilities(probs_or_logits, self.from_logits, self.drop_background)
        start = self.seen if start is None else start
        if start + len(p) > self.num_samples:
            raise ValueError(f"more rows than num_samples={self.num_samples} were fed")
        self.seen += len(p)
        p = p[: max(0, self.num_used - start)]  # rows past num_used are ignored
        rows = start + np.arange(len(p))
        split_of = np.searchsorted(self.bounds, rows, side="right") - 1  # (B,)
        for i in np.unique(split_of):
            part = p[split_of == i]
            self.sum_p[i] += part.sum(axis=0)
            self.sum_plogp[i] += xlogy(part, part).sum()

    def merge(self, other: InceptionScoreAccumulator) -> None:
        """Adds the rows another accumulator of the same ``num_samples`` was fed (another share)."""
        if other.sum_p.shape != self.sum_p.shape or other.num_samples != self.num_samples:
            raise ValueError("cannot merge accumulators of different shapes or num_samples")
        self.sum_p += other.sum_p
        self.sum_plogp += other.sum_plogp
        self.seen += other.seen

    def result(self) -> tuple[float, float]:
        """``(mean, std)`` over the splits; requires all ``num_samples`` rows to have been fed."""
        if self.seen != self.num_samples:
            raise ValueError(f"fed {self.seen} of num_samples={self.num_samples} rows")
        counts = np.diff(self.bounds).astype(np.float64)
        return _scores_from_sums(counts, self.sum_p, self.sum_plogp)


def inception_score_from_batches(
    logits_fn: Callable[[np.ndarray], np.ndarray],
    batches: Iterable[np.ndarray],
    num_samples: int,
    num_classes: int,
    **accumulator_kwargs,
) -> tuple[float, float]:
    """Streams image batches through any logits function (e.g. a jitted Inception classifier).

    Args:
        logits_fn: (B, H, W, 3) images -> (B, C_logits) logits (or probabilities, see kwargs).
        batches: iterable of image batches, ``num_samples`` rows in total.
        num_samples: total number of rows.
        num_classes: C after ``drop_background``.
        **accumulator_kwargs: :class:`InceptionScoreAccumulator` options (``from_logits`` defaults
            to True here).

    Returns:
        ``(mean, std)``.
    """
    accumulator_kwargs.setdefault("from_logits", True)
    acc = InceptionScoreAccumulator(num_samples, num_classes, **accumulator_kwargs)
    for batch in batches:
        acc.update(np.asarray(logits_fn(batch)))
    return acc.result()


def stackgan_cub_options() -> dict:
    """StackGAN CUB protocol options for :func:`inception_score`/the accumulator (ref. §14.1)."""
    return {"splits": 10, "from_logits": True, "drop_background": True, "full_batches_of": 64}
