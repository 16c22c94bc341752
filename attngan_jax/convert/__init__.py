"""Import of the original AttnGAN PyTorch checkpoints into Flax variables."""

from attngan_jax.convert.common import ConversionError, StateDictReader, check_against
from attngan_jax.convert.torch_io import load_state_dict

__all__ = ["ConversionError", "StateDictReader", "check_against", "load_state_dict"]
