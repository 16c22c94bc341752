# The experiment is attngan_jax/configs/shapes.py (shipped with the package); this file keeps
# --config=configs/shapes.py working in a clone.
from attngan_jax.configs.shapes import __doc__, get_config  # noqa: F401
