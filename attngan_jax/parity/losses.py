"""Parity runners for the losses: fixture kinds ``damsm_losses`` and ``gan_losses``.

``damsm_losses`` (``e_damsm_losses``): ``words_loss``/``sent_loss`` with and without class masks,
the per-caption attention maps, gradients of ``w0 + w1 + s0 + s1`` w.r.t. the four float inputs,
and ``kl_loss``. ``gan_losses`` (``e_gan_losses``): ``discriminator_loss`` of three Ds in train
mode, the generator loss (three adversarial terms + DAMSM through the image encoder of
``case_config["image_encoder_weights"]``, resized 256 -> 299 with ``align_corners=False`` as the
fixture's modern torch did) and KL. D outputs in the fixture are probabilities: ``sigmoid`` of our
logits is compared.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from attngan_jax import losses as L
from attngan_jax.parity import Check, nchw, nhwc, register, split_arrays

RTOL_DAMSM = 1e-5  # README: DAMSM losses, gradients, KL
ATOL_D = 5e-6  # README: D logits (probabilities) and errD
RTOL_RESIZED = 3e-3  # README: anything after the 256 -> 299 bilinear resize


def _check_labels(inputs: dict, bsz: int) -> None:
    labels = inputs.get("labels")
    if labels is not None and not np.array_equal(labels, np.arange(bsz)):
        raise ValueError("the losses use labels = arange(B) (the diagonal); the fixture differs")


@register("damsm_losses")
def run_damsm_losses(case: dict, arrays: dict, case_dir: str) -> list[Check]:
    """``words_loss``, ``sent_loss``, their gradients, the attention maps and ``kl_loss``."""
    cfg = case["case_config"]
    g1, g2, g3 = float(cfg["GAMMA1"]), float(cfg["GAMMA2"]), float(cfg["GAMMA3"])
    _, inputs, outputs = split_arrays(arrays)
    feats = jnp.asarray(nhwc(inputs["img_features"]), jnp.float32)  # (B, 17, 17, D)
    words = jnp.asarray(inputs["words_emb"].transpose(0, 2, 1), jnp.float32)  # (B, T, D)
    cnn_code = jnp.asarray(inputs["cnn_code"], jnp.float32)
    sent = jnp.asarray(inputs["sent_emb"], jnp.float32)
    cap_lens = np.asarray(inputs.get("cap_lens", cfg["cap_lens"]))
    class_ids = np.asarray(inputs.get("class_ids", cfg["class_ids"]))
    bsz = feats.shape[0]
    _check_labels(inputs, bsz)

    def total(f, w, c, s, cls):
        w0, w1, att = L.words_loss(f, w, cap_lens, cls, g1, g2, g3)
        s0, s1 = L.sent_loss(c, s, cls, g3)
        return w0 + w1 + s0 + s1, (w0, w1, s0, s1, att)

    grad_fn = jax.jit(jax.grad(total, argnums=(0, 1, 2, 3), has_aux=True))
    grads, (w0, w1, s0, s1, att) = grad_fn(feats, words, cnn_code, sent, class_ids)
    no_classes = jax.jit(lambda f, w, c, s: total(f, w, c, s, None))
    _, (nw0, nw1, ns0, ns1, _) = no_classes(feats, words, cnn_code, sent)
    ours = {
        "w_loss0": w0,
        "w_loss1": w1,
        "s_loss0": s0,
        "s_loss1": s1,
        "nocls_w_loss0": nw0,
        "nocls_w_loss1": nw1,
        "nocls_s_loss0": ns0,
        "nocls_s_loss1": ns1,
        "grad_img_features": nchw(grads[0]),
        "grad_words_emb": np.asarray(grads[1]).transpose(0, 2, 1),  # (B, D, T)
        "grad_cnn_code": grads[2],
        "grad_sent_emb": grads[3],
        "kl_loss": L.kl_loss(jnp.asarray(inputs["mu"]), jnp.asarray(inputs["logvar"])),
    }
    for i in range(bsz):
        ours[f"att_map_{i}"] = np.asarray(att)[i : i + 1, : int(cap_lens[i])]  # (1, len_i, h, w)
    return [_check(name, ours, ref, 0.0, RTOL_DAMSM) for name, ref in outputs.items()]


def _check(name: str, ours: dict, ref: np.ndarray, atol: float, rtol: float) -> Check:
    if name not in ours:
        raise KeyError(f"loss runner does not know output {name!r}")
    return Check(name, np.asarray(ours[name], np.float32), ref, atol, rtol)


@register("gan_losses")
def run_gan_losses(case: dict, arrays: dict, case_dir: str) -> list[Check]:
    """Three D losses, the generator loss (adversarial + DAMSM through the image encoder), KL."""
    from attngan_jax.convert.discriminator import convert_discriminator
    from attngan_jax.convert.inception import convert_image_encoder
    from attngan_jax.convert.torch_io import load_state_dict
    from attngan_jax.models.discriminator import Discriminator
    from attngan_jax.models.image_encoder import CNNEncoder

    cfg = case["case_config"]
    g1, g2, g3 = float(cfg["GAMMA1"]), float(cfg["GAMMA2"]), float(cfg["GAMMA3"])
    lam, nef, ndf = float(cfg["LAMBDA"]), int(cfg["nef"]), int(cfg["DF_DIM"])
    weights, inputs, outputs = split_arrays(arrays)
    sent = jnp.asarray(inputs["sent_emb"], jnp.float32)  # (B, nef)
    words = jnp.asarray(inputs["words_embs"].transpose(0, 2, 1), jnp.float32)  # (B, T, nef)
    cap_lens = np.asarray(inputs.get("cap_lens", cfg["cap_lens"]))
    class_ids = np.asarray(inputs.get("class_ids", cfg["class_ids"]))
    sizes = sorted(int(k.rsplit("_", 1)[1]) for k in inputs if k.startswith("real_imgs_"))

    ours: dict[str, np.ndarray] = {}
    g_adv = jnp.float32(0.0)
    for i, size in enumerate(sizes):
        prefix = f"netsD.{i}."
        uncond = any(k.startswith(prefix + "UNCOND_DNET.") for k in weights)
        d = Discriminator(df_dim=ndf, emb_dim=nef, image_size=size, uncond=uncond)
        v = convert_discriminator(weights, d, source=case.get("file", "gan_losses"), prefix=prefix)
        real = jnp.asarray(nhwc(inputs[f"real_imgs_{size}"]), jnp.float32)
        fake = jnp.asarray(nhwc(inputs[f"fake_imgs_{size}"]), jnp.float32)
        d_loss = jax.jit(
            lambda p, b, r, f, s, d=d, u=uncond: L.discriminator_loss(
                d.apply, p, b, r, f, s, u, train=True
            )
        )
        g_loss = jax.jit(
            lambda p, b, f, s, d=d, u=uncond: L.generator_adversarial_loss(
                d.apply, p, b, f, s, u, train=True
            )
        )
        err, _, lg = d_loss(v["params"], v["batch_stats"], real, fake, sent)
        ours[f"errD_{i}"] = err
        for k, val in lg.items():
            ours[f"d{i}_{k}"] = jax.nn.sigmoid(val)
        g, _, _ = g_loss(v["params"], v["batch_stats"], fake, sent)
        g_adv = g_adv + g

    enc = CNNEncoder(nef=nef, trunk="inception", align_corners=False)
    path = os.path.join(case_dir, cfg["image_encoder_weights"])
    enc_vars = convert_image_encoder(load_state_dict(path), enc, source=path)
    last = jnp.asarray(nhwc(inputs[f"fake_imgs_{sizes[-1]}"]), jnp.float32)
    encode = jax.jit(lambda v, x: enc.apply(v, x, False))  # weights as arguments, not constants
    region, code = encode(enc_vars, last)  # (B, 17, 17, nef), (B, nef)
    damsm, parts = L.damsm_loss(region, code, words, sent, cap_lens, class_ids, g1, g2, g3, lam)
    kl = L.kl_loss(jnp.asarray(inputs["mu"]), jnp.asarray(inputs["logvar"]))
    ours.update(
        region_features=nchw(region),
        cnn_code=code,
        w_loss=parts["w_loss"],
        s_loss=parts["s_loss"],
        errG_total=g_adv + damsm,
        errG_total_plus_kl=g_adv + damsm + kl,
        kl_loss=kl,
    )
    resized = (
        "region_features",
        "cnn_code",
        "w_loss",
        "s_loss",
        "errG_total",
        "errG_total_plus_kl",
    )
    checks = []
    for name, ref in outputs.items():
        if name in resized:
            atol, rtol = 0.0, RTOL_RESIZED
        elif name == "kl_loss":
            atol, rtol = 0.0, RTOL_DAMSM
        else:
            atol, rtol = ATOL_D, 0.0  # errD_i and the D probabilities
        checks.append(_check(name, ours, ref, atol, rtol))
    return checks
