r"""The original AttnGAN release -> a model directory that ``eval.py`` and ``sampling`` load.

    python -m attngan_jax.convert.release --netG=models/bird_AttnGAN2.pth \\
        --text_encoder=DAMSMencoders/bird/text_encoder200.pth \\
        --captions=data/birds/captions.pickle --out=runs/birds_release

reads (``.pth`` with torch's weights-only loader, or ``.npz`` with the torch key names):

* ``netG``: ``G_NET``/``G_DCGAN`` weights; the released ``*_AttnGAN2.pth`` files hold the EMA copy,
  written as the model directory's (EMA) ``generator``;
* ``text_encoder``/``image_encoder``: the DAMSM ``RNN_ENCODER``/``CNN_ENCODER`` (image encoder
  default: the text encoder's path with ``text`` -> ``image``);
* ``captions``: the ``captions.pickle`` whose vocabulary the text encoder was trained with (the
  original numbered words in Python-2 hash order, so no other vocabulary fits the weights).

The generator configuration (GF_DIM, R_NUM, BRANCH_NUM, B_DCGAN, Z_DIM, EMBEDDING_DIM,
CONDITION_DIM) is read off the state dict's shapes; flags given explicitly must agree with them.
``model.json`` gets ``words_num`` of the original's eval configs (reference §2.2: 25 birds, 20 COCO)
and the widths of ``config_lib.base_config().model`` (:func:`release_spec`).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from attngan_jax import config_lib, model_dir
from attngan_jax.convert.common import ConversionError
from attngan_jax.convert.generator import convert_generator
from attngan_jax.convert.inception import convert_image_encoder
from attngan_jax.convert.text_encoder import convert_text_encoder, text_encoder_from_state_dict
from attngan_jax.convert.torch_io import load_state_dict
from attngan_jax.data.vocab import Vocabulary
from attngan_jax.errors import MissingInputError
from attngan_jax.models import factory
from attngan_jax.models.factory import ModelSpec

EVAL_WORDS_NUM = {"birds": 25, "coco": 20}  # TEXT.WORDS_NUM of eval_bird.yml / eval_coco.yml
RELEASE_VOCAB = {5450: "birds", 27297: "coco"}
DF_DIM = {"birds": 64, "coco": 96}
SOURCE = "original AttnGAN release (converted by attngan_jax.convert.release)"


def generator_config_from_state_dict(
    sd: Mapping[str, Any], source: str = "<state_dict>"
) -> dict[str, Any]:
    """Generator widths read off a ``G_NET``/``G_DCGAN`` state dict's shapes (``source``: the file).

    Returns:
        ``{gf_dim, emb_dim, z_dim, condition_dim, r_num, num_stages, base_size, dcgan}``.

    Raises:
        ConversionError: the dict is not a generator's (the missing key is named).
    """
    for key in ("ca_net.fc.weight", "h_net1.fc.0.weight"):
        if key not in sd:
            raise ConversionError(
                f"{source}: not an AttnGAN generator state dict: '{key}' is missing (is it the "
                "generator, e.g. bird_AttnGAN2.pth?)"
            )
    four_ncf, nef = np.shape(sd["ca_net.fc.weight"])  # (4·ncf, nef)
    ncf = four_ncf // 4
    nz = np.shape(sd["h_net1.fc.0.weight"])[1] - ncf  # input is [c, z]
    dcgan = "img_net.img.0.weight" in sd
    head = "img_net.img.0.weight" if dcgan else "img_net1.img.0.weight"
    if head not in sd:
        raise ConversionError(f"{source}: not an AttnGAN generator state dict: '{head}' is missing")
    gf_dim = np.shape(sd[head])[1]  # (3, ngf, 3, 3)
    stages = {int(m.group(1)) for k in sd if (m := re.match(r"h_net(\d+)\.", k))}
    residuals = {int(m.group(1)) for k in sd if (m := re.match(r"h_net2\.residual\.(\d+)\.", k))}
    ups = {int(m.group(1)) for k in sd if (m := re.match(r"h_net1\.upsample(\d+)\.", k))}
    return {
        "gf_dim": int(gf_dim),
        "emb_dim": int(nef),
        "z_dim": int(nz),
        "condition_dim": int(ncf),
        "r_num": len(residuals),
        "num_stages": max(stages),
        "base_size": 4 * 2 ** len(ups),
        "dcgan": bool(dcgan),
    }


def release_spec(
    gen_cfg: Mapping[str, Any], vocab_size: int, embed_dim: int, dataset: str
) -> ModelSpec:
    """The :class:`~attngan_jax.models.factory.ModelSpec` of a converted release.

    The generator widths are the state dict's (:func:`generator_config_from_state_dict`); the
    rest are the original's: ``config_lib.base_config()``'s widths, the Inception-v3 image encoder,
    the PyTorch 0.3 resize and attention mask, and ``words_num`` of its eval configs.
    """
    base = ModelSpec.from_config(config_lib.base_config(), vocab_size=vocab_size)
    return dataclasses.replace(
        base,
        **gen_cfg,
        vocab_size=int(vocab_size),
        word_embed_dim=int(embed_dim),
        image_trunk="inception",
        align_corners=True,  # PyTorch 0.3 bilinear resize of the released models
        faithful_mask=True,
        df_dim=DF_DIM.get(dataset, base.df_dim),
        words_num=EVAL_WORDS_NUM.get(dataset, 18),
        image_sizes=config_lib.stage_sizes(gen_cfg["base_size"], gen_cfg["num_stages"]),
        dataset=dataset,
        damsm_dropout=0.5,
        dtype="float32",
    )


def convert_release(
    net_g: str,
    text_encoder: str,
    captions: str,
    out: str,
    image_encoder: str | None = None,
    dataset: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Converts the original files into a model directory at ``out``.

    Args:
        net_g: ``bird_AttnGAN2.pth`` (or ``.npz`` with torch keys).
        text_encoder: ``text_encoder200.pth``.
        captions: the dataset's ``captions.pickle``.
        out: model directory to write.
        image_encoder: ``image_encoder200.pth``; default ``text_encoder`` with text -> image
            (the DAMSM image encoder is needed for R-precision only, sampling works without it).
        dataset: ``birds`` | ``coco`` | another name; default from the vocabulary size
            (5450 birds, 27297 COCO).
        overrides: generator fields given explicitly (``gf_dim``, ``r_num``, ...): each must equal
            the value read from the state dict.

    Returns:
        The written ``model.json`` dict.

    Raises:
        ConversionError: a file does not fit (key and shapes named) or the vocabulary size differs
            from the text encoder's.
    """
    g_sd = load_state_dict(net_g)
    gen_cfg = generator_config_from_state_dict(g_sd, net_g)
    for k, v in (overrides or {}).items():
        if v is not None and k in gen_cfg and gen_cfg[k] != v:
            raise ConversionError(
                f"{net_g}: --{k}={v} but the state dict's shapes say {k}={gen_cfg[k]}"
            )
    t_sd = load_state_dict(text_encoder)
    t_mod = text_encoder_from_state_dict(t_sd, text_encoder)
    vocab = Vocabulary.from_captions_pickle(captions)
    if len(vocab) != t_mod.vocab_size:
        raise ConversionError(
            f"{captions} has {len(vocab)} words but {text_encoder} was trained with "
            f"{t_mod.vocab_size} (encoder.weight is ({t_mod.vocab_size}, {t_mod.embed_dim})). "
            "Likely cause: the captions.pickle of another dataset or of a re-run preprocessing "
            f"(released encoders: birds {5450}, COCO {27297} words); use the captions.pickle that "
            "came with the encoder."
        )
    if t_mod.hidden_dim != gen_cfg["emb_dim"]:
        raise ConversionError(
            f"{text_encoder} produces {t_mod.hidden_dim}-d features but {net_g} expects "
            f"EMBEDDING_DIM {gen_cfg['emb_dim']}: the two files are not from one release"
        )
    dataset = dataset or RELEASE_VOCAB.get(len(vocab), "birds")
    spec = release_spec(gen_cfg, len(vocab), t_mod.embed_dim, dataset)
    gen = convert_generator(g_sd, factory.generator(spec), source=net_g)
    text_mod, image_mod = factory.text_encoder(spec), factory.image_encoder(spec)
    encoders: dict[str, Any] = {"text": convert_text_encoder(t_sd, text_mod, source=text_encoder)}
    if image_encoder is None:
        base, name = os.path.split(text_encoder)
        image_encoder = os.path.join(base, name.replace("text", "image"))
    if not os.path.exists(image_encoder):
        raise MissingInputError(
            f"image encoder not found: {image_encoder} (pass --image_encoder; it comes with the "
            "text encoder in DAMSMencoders/<dataset>/)"
        )
    encoders["image"] = convert_image_encoder(
        load_state_dict(image_encoder), image_mod, source=image_encoder
    )
    os.makedirs(out, exist_ok=True)
    model_dir.save_generator(out, gen)
    model_dir.save_damsm(out, encoders)
    vocab.save(os.path.join(out, "vocab.json"))
    mj = {**spec.to_json(), "source": SOURCE}
    model_dir.save_model_config(out, mj)  # last: a directory with model.json is complete
    return mj


def main(argv: list[str]) -> None:
    """CLI entry point (absl flags, see the module docstring)."""
    from attngan_jax.runtime import xla_flags

    xla_flags.apply()  # XLA:CPU flags, before JAX starts its backend
    from absl import flags

    from attngan_jax import cli

    del argv
    f = flags.FLAGS
    with cli.report_input_errors():  # a wrong file: one line naming it, no traceback
        mj = convert_release(
            f.netG, f.text_encoder, f.captions, f.out, image_encoder=f.image_encoder,
            dataset=f.dataset,
            overrides={"gf_dim": f.gf_dim, "r_num": f.r_num, "dcgan": f.dcgan,
                       "num_stages": f.branch_num},
        )  # fmt: skip
    sizes = "/".join(str(s) for s in mj["image_sizes"])
    print(
        f"wrote {f.out}: {mj['dataset']} generator gf_dim={mj['gf_dim']} r_num={mj['r_num']} "
        f"stages {sizes}{' (DCGAN)' if mj['dcgan'] else ''}, vocabulary {mj['vocab_size']} words"
    )


def _define_flags() -> None:
    from absl import flags

    flags.DEFINE_string("netG", None, "Generator weights (bird_AttnGAN2.pth, .npz).", required=True)
    flags.DEFINE_string("text_encoder", None, "DAMSM text encoder (.pth/.npz).", required=True)
    flags.DEFINE_string("image_encoder", None, "DAMSM image encoder (default: text -> image).")
    flags.DEFINE_string("captions", None, "captions.pickle of the dataset.", required=True)
    flags.DEFINE_string("out", None, "Model directory to write.", required=True)
    flags.DEFINE_string("dataset", None, "birds | coco | other (default: from vocabulary size).")
    flags.DEFINE_integer("gf_dim", None, "GF_DIM (checked against the weights).")
    flags.DEFINE_integer("r_num", None, "R_NUM (checked against the weights).")
    flags.DEFINE_integer("branch_num", None, "TREE.BRANCH_NUM (checked against the weights).")
    flags.DEFINE_bool("dcgan", None, "B_DCGAN (checked against the weights).")


if __name__ == "__main__":
    from absl import app

    import attngan_jax  # noqa: F401  (XLA flags before JAX starts)

    _define_flags()
    app.run(main)
