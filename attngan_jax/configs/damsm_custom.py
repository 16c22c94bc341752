r"""DAMSM pretraining on your own captioned images (docs/data.md), with the original's birds values.

Run::

    python train.py --config=configs/damsm_custom.py --workdir=runs/damsm_custom \
        --config.data.manual_dir=PATH/TO/IMAGES \
        --config.damsm.inception_weights=inception_v3_google-0cc3c7bd.pth

Tiny variant for tests: ``--config=configs/damsm_custom.py:tiny``. The training values are the
birds' (``configs/damsm_birds.py``, reference §2.2 DAMSM/bird): a starting point, not a tuned
recipe for your data.
"""

from attngan_jax.configs import damsm_birds


def get_config(arg=None):
    c = damsm_birds.get_config(arg)
    c.data.name = "custom"
    c.data.data_dir = "data/custom"
    c.data.captions_per_image = 0  # 0 = the smallest number of captions over the files
    return c
