# The experiment is attngan_jax/configs/attngan_custom.py (shipped with the package); this file keeps
# --config=configs/attngan_custom.py working in a clone.
from attngan_jax.configs.attngan_custom import __doc__, get_config  # noqa: F401
