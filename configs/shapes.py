r"""The captioned-shapes demo: DAMSM pretraining then AttnGAN, on the CPU in about 15 minutes.

Run (this is also what ``python train.py`` without flags does)::

    python train.py --config=configs/shapes.py --workdir=runs/shapes

That is 3,000 GAN steps in ~13 minutes; ``--config.gan.num_epochs=30`` (7,500 steps, ~28 minutes,
or ~15 more when resuming a finished demo) meets all three caption-fidelity targets (README).

Variants: ``:tiny`` (a few steps, for tests), ``:damsm`` / ``:attngan`` (one phase only).
"""

from attngan_jax import config_lib


def get_config(arg=None):
    variant = config_lib.parse_variant(arg)
    phase = variant if variant in ("damsm", "attngan") else "demo"
    return config_lib.shapes(phase, "tiny" if variant == "tiny" else "full")
