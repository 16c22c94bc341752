r"""DAMSM pretraining on birds (the original's `code/cfg` values).

Run::

    python train.py --config=configs/damsm_birds.py --workdir=runs/damsm_birds \
        --config.damsm.inception_weights=inception_v3_google-0cc3c7bd.pth

Tiny variant for tests: `--config=configs/damsm_birds.py:tiny`.
"""

from attngan_jax import config_lib


def get_config(arg=None):
    return config_lib.birds("damsm", config_lib.parse_variant(arg))
