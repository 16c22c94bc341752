r"""The captioned-shapes demo: DAMSM pretraining then AttnGAN, on the CPU in about 15 minutes.

Run (this is also what ``python train.py`` without flags does)::

    python train.py --config=configs/shapes.py --workdir=runs/shapes

That is DAMSM for 7 epochs and a 16x16 -> 32x32 AttnGAN for 5,000 steps in ~14 minutes, meeting all
three caption-fidelity targets (README). The 32 -> 64 variant needs ~7,500 GAN steps (~28 minutes)::

    python train.py --workdir=runs/shapes64 '--config.data.image_sizes=(32,64)' \
        --config.model.base_size=32 --config.damsm.num_epochs=5 --config.gan.num_epochs=30

Variants: ``:tiny`` (a few steps, for tests), ``:damsm`` / ``:attngan`` (one phase only).
"""

from attngan_jax import config_lib


def get_config(arg=None):
    variant = config_lib.parse_variant(arg, ("full", "tiny", "damsm", "attngan"))
    phase = variant if variant in ("damsm", "attngan") else "demo"
    return config_lib.shapes(phase, "tiny" if variant == "tiny" else "full")
