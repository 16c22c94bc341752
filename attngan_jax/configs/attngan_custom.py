r"""AttnGAN training on custom (the original's `code/cfg` values).

Run::

    python train.py --config=configs/attngan_custom.py --workdir=runs/attngan_custom --config.gan.damsm_checkpoint=runs/damsm_custom

Tiny variant for tests: `--config=configs/attngan_custom.py:tiny`.
"""

from attngan_jax import config_lib


def get_config(arg=None):
    return config_lib.custom("attngan", config_lib.parse_variant(arg))
