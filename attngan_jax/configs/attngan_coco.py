r"""AttnGAN training on coco (the original's `code/cfg` values).

Run::

    python train.py --config=configs/attngan_coco.py --workdir=runs/attngan_coco --config.gan.damsm_checkpoint=runs/damsm_coco

Tiny variant for tests: `--config=configs/attngan_coco.py:tiny`.
"""

from attngan_jax import config_lib


def get_config(arg=None):
    return config_lib.coco("attngan", config_lib.parse_variant(arg))
