r"""AttnGAN training on your own captioned images (docs/data.md), with the original's birds values.

Run::

    python train.py --config=configs/attngan_custom.py --workdir=runs/attngan_custom \
        --config.data.manual_dir=PATH/TO/IMAGES --config.gan.damsm_checkpoint=runs/damsm_custom

Tiny variant for tests: ``--config=configs/attngan_custom.py:tiny``. The training values are the
birds' (``configs/attngan_birds.py``, reference §2.2 bird_attn2): a starting point, not a tuned
recipe for your data.
"""

from attngan_jax.configs import attngan_birds


def get_config(arg=None):
    c = attngan_birds.get_config(arg)
    c.data.name = "custom"
    c.data.data_dir = "data/custom"
    c.data.captions_per_image = 0  # 0 = the smallest number of captions over the files
    return c
