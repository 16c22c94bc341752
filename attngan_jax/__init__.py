"""attngan-jax: AttnGAN (Xu et al., CVPR 2018) in JAX/Flax.

Importing the package changes nothing process-wide. The entry points (``train.py``, ``eval.py``,
``python -m attngan_jax.*``, the benchmarks) call :func:`attngan_jax.runtime.xla_flags.apply` before
JAX starts its backend; a notebook on CPU does the same first for the fast convolution flag.
"""

__version__ = "0.1.0"
