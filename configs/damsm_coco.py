# The experiment is attngan_jax/configs/damsm_coco.py (shipped with the package); this file keeps
# --config=configs/damsm_coco.py working in a clone.
from attngan_jax.configs.damsm_coco import __doc__, get_config  # noqa: F401
