# The experiment is attngan_jax/configs/attngan_birds.py (shipped with the package); this file keeps
# --config=configs/attngan_birds.py working in a clone.
from attngan_jax.configs.attngan_birds import __doc__, get_config  # noqa: F401
