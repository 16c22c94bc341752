"""Train DAMSM and/or AttnGAN (the program is attngan_jax/commands/train.py; ``attngan-train``).

    python train.py                       # the captioned-shapes demo (DAMSM then AttnGAN), runs/shapes
    python train.py --config=configs/attngan_birds.py --workdir=runs/birds --config.gan.batch_size=20

Re-running with the same --workdir resumes from its last checkpoint. See README.md.
"""

if __name__ == "__main__":
    from attngan_jax import commands

    commands.attngan_train()
