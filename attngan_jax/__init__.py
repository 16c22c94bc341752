"""attngan-jax: AttnGAN (Xu et al., CVPR 2018) in JAX/Flax."""

from attngan_jax import _xla_flags

_xla_flags.apply()  # must run before JAX initialises its CPU backend

__version__ = "0.1.0"
