# The experiment is attngan_jax/configs/attngan_coco.py (shipped with the package); this file keeps
# --config=configs/attngan_coco.py working in a clone.
from attngan_jax.configs.attngan_coco import __doc__, get_config  # noqa: F401
