# The experiment is attngan_jax/configs/damsm_birds.py (shipped with the package); this file keeps
# --config=configs/damsm_birds.py working in a clone.
from attngan_jax.configs.damsm_birds import __doc__, get_config  # noqa: F401
