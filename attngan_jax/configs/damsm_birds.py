r"""DAMSM pretraining on CUB-200 birds: the original's ``code/cfg/DAMSM/bird.yml``.

Run::

    python train.py --config=configs/damsm_birds.py --workdir=runs/damsm_birds \
        --config.damsm.inception_weights=inception_v3_google-0cc3c7bd.pth

Tiny variant for tests: ``--config=configs/damsm_birds.py:tiny``. Every value below is the
original's (reference §2.2, column DAMSM/bird); keys not set here keep ``config_lib.base_config``.
"""

from attngan_jax import config_lib


def get_config(arg=None):
    variant = config_lib.parse_variant(arg)
    c = config_lib.base_config()
    c.phase = "damsm"

    c.data.name = "birds"
    c.data.data_dir = "data/birds"
    c.data.captions_per_image = 10  # TEXT.CAPTIONS_PER_IMAGE
    c.data.words_num = 18  # TEXT.WORDS_NUM (default)
    c.data.image_sizes = (299,)  # TREE.BASE_SIZE 299: the Inception-v3 input

    c.model.image_trunk = "inception"  # CNN_ENCODER: ImageNet Inception-v3, frozen below Mixed_6e
    c.model.embed_dim = 300  # RNN_ENCODER's word embedding
    c.model.emb_dim = 256  # TEXT.EMBEDDING_DIM: the common text-image space

    c.damsm.batch_size = 48  # TRAIN.BATCH_SIZE
    c.damsm.num_epochs = 600  # TRAIN.MAX_EPOCH
    c.damsm.lr = 0.002  # TRAIN.ENCODER_LR
    c.damsm.lr_decay = 0.98  # per epoch until lr / 10 (pretrain_DAMSM.py, reference §10)
    c.damsm.reset_optimizer_each_epoch = True  # pretrain_DAMSM.py re-creates Adam every epoch
    c.damsm.rnn_grad_clip = 0.25  # TRAIN.RNN_GRAD_CLIP
    c.damsm.gamma1, c.damsm.gamma2, c.damsm.gamma3 = 4.0, 5.0, 10.0  # TRAIN.SMOOTH.GAMMA1-3
    c.damsm.dropout = 0.5  # RNN_ENCODER's drop_prob
    c.damsm.class_masking = True  # same-class pairs are not negatives (reference §8.2)
    if variant == "tiny":
        config_lib.tiny(c)
    return c
