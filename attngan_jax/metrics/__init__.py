"""Evaluation metrics: Inception Score, FID, R-precision, and the TF checkpoint reader they need.

Everything here is NumPy/SciPy in float64 and independent of the networks: the adapters take any
feature/logits function (``fid.stats_from_batches``,
``inception_score.inception_score_from_batches``). The functions ``inception_score.inception_score``
and ``r_precision.r_precision`` are reached through their modules (re-exporting them here would
shadow the module names).
"""

from attngan_jax.metrics.fid import FeatureStats, frechet_distance, load_reference_stats
from attngan_jax.metrics.inception_score import InceptionScoreAccumulator
from attngan_jax.metrics.r_precision import sample_mismatched_indices
from attngan_jax.metrics.tf_checkpoint import read_tf_checkpoint

__all__ = [
    "FeatureStats",
    "InceptionScoreAccumulator",
    "frechet_distance",
    "load_reference_stats",
    "read_tf_checkpoint",
    "sample_mismatched_indices",
]
