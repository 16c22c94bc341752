r"""AttnGAN training on CUB-200 birds: the original's ``code/cfg/bird_attn2.yml``.

Run::

    python train.py --config=configs/attngan_birds.py --workdir=runs/attngan_birds \
        --config.gan.damsm_checkpoint=runs/damsm_birds

Tiny variant for tests: ``--config=configs/attngan_birds.py:tiny``. Every value below is the
original's (reference §2.2, column bird_attn2); keys not set here keep ``config_lib.base_config``.
"""

from attngan_jax import config_lib


def get_config(arg=None):
    variant = config_lib.parse_variant(arg)
    c = config_lib.base_config()
    c.phase = "attngan"

    c.data.name = "birds"
    c.data.data_dir = "data/birds"
    c.data.captions_per_image = 10  # TEXT.CAPTIONS_PER_IMAGE
    c.data.words_num = 18  # TEXT.WORDS_NUM (default)

    # Three stages, 64 -> 128 -> 256 (TREE.BRANCH_NUM, TREE.BASE_SIZE; data.image_sizes derived).
    c.model.num_stages = 3
    c.model.base_size = 64
    c.model.gf_dim = 32  # GAN.GF_DIM
    c.model.df_dim = 64  # GAN.DF_DIM
    c.model.z_dim = 100  # GAN.Z_DIM
    c.model.condition_dim = 100  # GAN.CONDITION_DIM
    c.model.r_num = 2  # GAN.R_NUM
    c.model.emb_dim = 256  # TEXT.EMBEDDING_DIM
    c.model.faithful_mask = True  # the original's misaligned attention mask (reference §16.1)

    c.gan.batch_size = 20  # TRAIN.BATCH_SIZE
    c.gan.num_epochs = 600  # TRAIN.MAX_EPOCH
    c.gan.g_lr = 2e-4  # TRAIN.GENERATOR_LR
    c.gan.d_lr = 2e-4  # TRAIN.DISCRIMINATOR_LR
    c.gan.beta1, c.gan.beta2 = 0.5, 0.999  # trainer.py's Adam betas
    c.gan.lam = 5.0  # TRAIN.SMOOTH.LAMBDA: the DAMSM term's weight
    c.gan.gamma1, c.gan.gamma2, c.gan.gamma3 = 4.0, 5.0, 10.0  # TRAIN.SMOOTH.GAMMA1-3
    c.gan.ema_decay = 0.999  # trainer.py's avg_param_G
    if variant == "tiny":
        config_lib.tiny(c)
    return c
