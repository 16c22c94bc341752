"""The ModelSpec of a test config (the vocabulary size is the dataset's, not a config key)."""

from attngan_jax.data.shapes import IXTOWORD
from attngan_jax.models.factory import ModelSpec


def spec_of(config, vocab_size: int | None = None) -> ModelSpec:
    """``config``'s networks with ``vocab_size`` words (default: the shapes dataset's vocabulary)."""
    return ModelSpec.from_config(config, vocab_size or len(IXTOWORD))
