r"""DAMSM pretraining on coco (the original's `code/cfg` values).

Run::

    python train.py --config=configs/damsm_coco.py --workdir=runs/damsm_coco \
        --config.damsm.inception_weights=inception_v3_google-0cc3c7bd.pth

Tiny variant for tests: `--config=configs/damsm_coco.py:tiny`.
"""

from attngan_jax import config_lib


def get_config(arg=None):
    return config_lib.coco("damsm", config_lib.parse_variant(arg))
