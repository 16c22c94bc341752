r"""AttnGAN training on birds (the original's `code/cfg` values).

Run::

    python train.py --config=configs/attngan_birds.py --workdir=runs/attngan_birds --config.gan.damsm_checkpoint=runs/damsm_birds

Tiny variant for tests: `--config=configs/attngan_birds.py:tiny`.
"""

from attngan_jax import config_lib


def get_config(arg=None):
    return config_lib.birds("attngan", config_lib.parse_variant(arg))
