# The experiment is attngan_jax/configs/damsm_custom.py (shipped with the package); this file keeps
# --config=configs/damsm_custom.py working in a clone.
from attngan_jax.configs.damsm_custom import __doc__, get_config  # noqa: F401
