"""AttnGAN training (``code/trainer.py``, reference §11): state, and one jitted step per iteration.

Update order (the original's, which differs from the simultaneous update of XMC-GAN/MAGVIT):

1. Text encoder (frozen, eval mode) -> words (B, T, D), sentence (B, D); mask = ``captions == 0``.
2. ONE generator forward in train mode (BatchNorm batch statistics) with ``z`` and the CA noise
   ``eps`` drawn from ``fold_in(rng, step)`` (named splits ``"z"``, ``"ca"``).
3. Every discriminator ``D_i`` is updated on (real_i, detached fake_i): real/fake/mismatched terms.
4. The generator loss is evaluated through the *updated* discriminators on the *same* fakes
   (adversarial terms of every stage + λ·DAMSM on the last stage + KL) and the generator is updated.
   Gradients are taken with respect to the fakes only and pulled back through the stored forward
   (``jax.vjp``): unlike the original, no gradient is computed for the discriminators' parameters
   during the generator update (the original computes and discards them), with equal results.
5. EMA of the generator parameters (decay 0.999; parameters only, as the original).

Adam(b1=0.5, b2=0.999) per player (one optax transform over the dict of discriminators: Adam is
element-wise, so this equals one optimizer per discriminator).
"""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import optax

from attngan_jax import losses
from attngan_jax.models.discriminator import Discriminator, init_discriminator
from attngan_jax.models.generator import Generator, perturb_batchnorm_scales
from attngan_jax.models.image_encoder import CNNEncoder
from attngan_jax.models.text_encoder import RNNEncoder
from attngan_jax.types import Batch, PRNGKey, PyTree


@flax.struct.dataclass
class GANState:
    """Everything AttnGAN training checkpoints.

    Attributes:
        step: number of iterations done.
        g_params, g_stats, g_opt: generator parameters, BatchNorm statistics, Adam state.
        d_params, d_stats, d_opt: dicts ``{"d0": ..., "d1": ...}`` over the discriminators.
        ema_params: exponential moving average of ``g_params``.
        encoders: frozen DAMSM encoders ``{"text": {"params"}, "image": {"params", "batch_stats"}}``.
        rng: base key; per-step keys are ``fold_in(rng, step)``.
    """

    step: jax.Array
    g_params: PyTree
    g_stats: PyTree
    g_opt: PyTree
    d_params: PyTree
    d_stats: PyTree
    d_opt: PyTree
    ema_params: PyTree
    encoders: PyTree
    rng: jax.Array


def compute_dtype(config):
    """``jnp.bfloat16`` for ``config.dtype == "bfloat16"``, else float32."""
    return jnp.bfloat16 if config.dtype == "bfloat16" else jnp.float32


def build_generator(config) -> Generator:
    """The generator of a config."""
    m = config.model
    return Generator(
        gf_dim=m.gf_dim,
        emb_dim=m.emb_dim,
        z_dim=m.z_dim,
        condition_dim=m.condition_dim,
        r_num=m.r_num,
        num_stages=m.num_stages,
        base_size=m.base_size,
        dcgan=m.dcgan,
        faithful_mask=m.faithful_mask,
        dtype=compute_dtype(config),
    )


def stage_sizes(config) -> list[int]:
    """Output size of each generator stage (``base_size * 2**i``)."""
    return [config.model.base_size * 2**i for i in range(config.model.num_stages)]


def build_discriminators(config) -> dict[str, Discriminator]:
    """``{"d<i>": Discriminator}`` for every discriminated stage (only the last for AttnDCGAN)."""
    sizes = stage_sizes(config)
    m = config.model
    ds = {}
    for i, s in enumerate(sizes):
        if m.dcgan and i < len(sizes) - 1:
            continue
        ds[f"d{i}"] = Discriminator(
            df_dim=m.df_dim,
            emb_dim=m.emb_dim,
            image_size=s,
            uncond=not m.dcgan,
            dtype=compute_dtype(config),
        )
    return ds


def build_encoders(config) -> tuple[RNNEncoder, CNNEncoder]:
    """The frozen DAMSM encoders (same construction as in DAMSM pretraining)."""
    from attngan_jax.train.damsm import build_models

    return build_models(config)


def make_optimizers(config) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
    """(generator Adam, discriminators Adam) with the original's betas."""
    g = config.gan
    g_tx = optax.adam(g.g_lr, b1=g.beta1, b2=g.beta2)
    d_tx = optax.adam(g.d_lr, b1=g.beta1, b2=g.beta2)
    return g_tx, d_tx


def init_generator(gen: Generator, rng: PRNGKey, words_num: int) -> PyTree:
    """The original's ``weights_init`` for G: orthogonal convs/linears, BN scales ~ N(1, 0.02)."""
    k_init, k_bn, k_ca = jax.random.split(rng, 3)
    b = 2
    z = jnp.zeros((b, gen.z_dim))
    sent = jnp.zeros((b, gen.emb_dim))
    words = jnp.zeros((b, words_num, gen.emb_dim))
    mask = jnp.zeros((b, words_num), bool)
    v = gen.init({"params": k_init, "ca": k_ca}, z, sent, words, mask, train=False)
    return {"params": perturb_batchnorm_scales(v["params"], k_bn), "batch_stats": v["batch_stats"]}


def init_state(config, rng: PRNGKey, encoders: PyTree) -> GANState:
    """Fresh generator/discriminators (the original's ``weights_init``) and given encoders."""
    gen = build_generator(config)
    k_g, k_d, k_state = jax.random.split(rng, 3)
    g_vars = init_generator(gen, k_g, words_num=config.data.words_num)
    d_params, d_stats = {}, {}
    for i, (name, d) in enumerate(build_discriminators(config).items()):
        v = init_discriminator(d, jax.random.fold_in(k_d, i))
        d_params[name], d_stats[name] = v["params"], v["batch_stats"]
    g_tx, d_tx = make_optimizers(config)
    return GANState(
        step=jnp.zeros((), jnp.int32),
        g_params=g_vars["params"],
        g_stats=g_vars["batch_stats"],
        g_opt=g_tx.init(g_vars["params"]),
        d_params=d_params,
        d_stats=d_stats,
        d_opt=d_tx.init(d_params),
        ema_params=jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True), g_vars["params"]),
        encoders=encoders,
        rng=k_state,
    )


def encode_text(text: RNNEncoder, encoders: PyTree, batch: Batch):
    """Frozen text encoder: (words (B, L, D), sentence (B, D), mask (B, L) True at padding)."""
    words, sent = text.apply(encoders["text"], batch["captions"], batch["cap_lens"], train=False)
    mask = batch["captions"] == 0
    return jax.lax.stop_gradient(words), jax.lax.stop_gradient(sent), mask


def generator_loss(
    config,
    discs,
    image,
    d_params,
    d_stats,
    image_vars,
    fakes,
    mu,
    logvar,
    words,
    sent,
    cap_lens,
    class_ids,
    hard=None,
):
    """The generator's loss (reference §8.6 + §8.7), as the training step evaluates it.

    ``Σ_i [BCE(cond(D_i(fake_i)), 1) + BCE(uncond(D_i(fake_i)), 1)] + λ(w0 + w1) + λ(s0 + s1) + KL``
    with the DAMSM terms from the frozen image encoder (eval mode) on the last stage's images.

    Args:
        config: experiment config (``gan.lam``, ``gan.gamma1..3``).
        discs: ``{"d<i>": Discriminator}``; d_params, d_stats: their variables.
        image: the DAMSM image encoder module; image_vars: its variables.
        fakes: tuple of (B, S_i, S_i, 3) images per stage; mu, logvar: (B, ncf).
        words, sent: (B, T, D), (B, D) text features; cap_lens, class_ids: (B,).
        hard: optional ``{"words", "sent", "valid"}`` of mirrored captions, extra negatives of
            the DAMSM term (``gan.mirror_negatives_g``; see :func:`losses.damsm_loss`).

    Returns:
        ``(total, (parts, new_d_stats))``; parts has ``g_loss<i>``, ``w_loss``, ``s_loss``,
        ``kl_loss``.
    """
    g = config.gan
    total, aux, st_out = 0.0, {}, {}
    for name, d in discs.items():
        i = int(name[1:])
        loss_i, st, _ = losses.generator_adversarial_loss(
            d.apply, d_params[name], d_stats[name], fakes[i], sent, d.uncond
        )
        st_out[name] = st
        aux[f"g_loss{i}"] = loss_i
        total = total + loss_i
    region, code = image.apply(image_vars, fakes[-1], train=False)
    f32 = jnp.float32
    damsm, parts = losses.damsm_loss(
        region.astype(f32),
        code.astype(f32),
        words.astype(f32),
        sent.astype(f32),
        cap_lens,
        class_ids,
        g.gamma1,
        g.gamma2,
        g.gamma3,
        g.lam,
        hard_words=None if hard is None else hard["words"].astype(f32),
        hard_sent=None if hard is None else hard["sent"].astype(f32),
        hard_valid=None if hard is None else hard["valid"],
    )
    kl = losses.kl_loss(mu.astype(f32), logvar.astype(f32))
    aux.update(parts, kl_loss=kl)
    return total + damsm + kl, (aux, st_out)


def make_train_step(config, ixtoword=None):
    """``train_step(state, batch) -> (state, metrics)``: one full AttnGAN iteration, pure.

    Hard negatives (not in the original; in-batch mismatched pairs almost always differ in the
    first colour, so neither player has to learn positions or the second object without them):
    with ``gan.mirror_negatives_d`` / ``_g`` each caption with a position word is mirrored
    (left<->right, or top<->bottom/above<->below) and the mirrored caption is a hard mismatched
    text for the discriminators' conditional logits (``_d``) and an extra negative of the
    generator's DAMSM term (``_g``). With ``gan.recolour_negatives`` half of the captions naming
    two colours get, instead of their mirror, a hard caption whose last-named colour is renamed
    (:func:`attngan_jax.train.damsm.recolour_captions`): a generator that paints both objects in
    one colour is caught by it. The metrics ``D<i>_mirror_prob`` cover every hard caption.

    Args:
        config: experiment config.
        ixtoword: the vocabulary's words by id; required by the hard negatives above.
    """
    from attngan_jax.train.damsm import (
        colour_word_ids,
        mirror_captions,
        recolour_captions,
        swap_tables,
    )

    gen = build_generator(config)
    discs = build_discriminators(config)
    text, image = build_encoders(config)
    g_tx, d_tx = make_optimizers(config)
    g = config.gan
    sizes = stage_sizes(config)
    mirror_d, mirror_g = g.get("mirror_negatives_d", False), g.get("mirror_negatives_g", False)
    recolour = g.get("recolour_negatives", False)
    hard_negatives = mirror_d or mirror_g
    if recolour and not hard_negatives:
        raise ValueError(
            "gan.recolour_negatives changes the hard captions of gan.mirror_negatives_d/_g: "
            "turn on at least one of them"
        )
    if hard_negatives and ixtoword is None:
        raise ValueError(
            "gan.mirror_negatives_d/_g and gan.recolour_negatives need the vocabulary: pass "
            "ixtoword to make_train_step"
        )
    tables = swap_tables(ixtoword) if hard_negatives else None
    colour_ids = colour_word_ids(ixtoword) if recolour else None

    def train_step(state: GANState, batch: Batch):
        rng = jax.random.fold_in(state.rng, state.step)
        k_z, k_eps = jax.random.split(rng)
        words, sent, mask = encode_text(text, state.encoders, batch)
        hard = None
        if hard_negatives:
            caps_m, _, changed = mirror_captions(batch["captions"], tables)
            if recolour:
                # A key of its own (fold_in), so z and eps stay the draws they are without it.
                k_draw, k_pick = jax.random.split(jax.random.fold_in(rng, 2))
                caps_r, recoloured = recolour_captions(batch["captions"], colour_ids, k_draw)
                pick = recoloured & jax.random.bernoulli(k_pick, 0.5, recoloured.shape)
                caps_m = jnp.where(pick[:, None], caps_r, caps_m)
                changed = changed | pick
            words_m, sent_m, _ = encode_text(
                text, state.encoders, {"captions": caps_m, "cap_lens": batch["cap_lens"]}
            )
            hard = {"words": words_m, "sent": sent_m, "valid": changed}
        bsz = sent.shape[0]
        z = jax.random.normal(k_z, (bsz, config.model.z_dim))
        eps = jax.random.normal(k_eps, (bsz, config.model.condition_dim))

        def g_forward(g_params):
            out, upd = gen.apply(
                {"params": g_params, "batch_stats": state.g_stats},
                z,
                sent,
                words,
                mask,
                train=True,
                eps=eps,
                mutable=["batch_stats"],
            )
            fakes = tuple(x.astype(jnp.float32) for x in out.fake_imgs)
            return (fakes, out.mu, out.logvar), upd["batch_stats"]

        (fakes, mu, logvar), g_vjp, g_stats = jax.vjp(g_forward, state.g_params, has_aux=True)

        # 3. Discriminators on (real, detached fake).
        metrics = {}
        d_grads, d_stats = {}, {}
        for name, d in discs.items():
            i = int(name[1:])
            real = batch[f"image_{sizes[i]}"]

            def d_loss(p, d=d, real=real, i=i, name=name):
                err, st, lg = losses.discriminator_loss(
                    d.apply,
                    p,
                    state.d_stats[name],
                    real,
                    fakes[i],
                    sent,
                    d.uncond,
                    hard_sent_emb=hard["sent"] if mirror_d else None,
                    hard_valid=hard["valid"] if mirror_d else None,
                )
                return err, (st, lg)

            (err, (st, lg)), grad = jax.value_and_grad(d_loss, has_aux=True)(state.d_params[name])
            d_grads[name], d_stats[name] = grad, st
            metrics[f"errD{i}"] = err
            metrics[f"D{i}_real_prob"] = jnp.mean(jax.nn.sigmoid(lg["cond_real"]))
            metrics[f"D{i}_fake_prob"] = jnp.mean(jax.nn.sigmoid(lg["cond_fake"]))
            if mirror_d:
                metrics[f"D{i}_mirror_prob"] = jnp.mean(jax.nn.sigmoid(lg["cond_hard"]))
        d_updates, d_opt = d_tx.update(d_grads, state.d_opt, state.d_params)
        d_params = optax.apply_updates(state.d_params, d_updates)

        # 4. Generator through the updated discriminators, gradients w.r.t. the fakes only.
        def g_loss(fakes, mu, logvar):
            return generator_loss(
                config,
                discs,
                image,
                d_params,
                d_stats,
                state.encoders["image"],
                fakes,
                mu,
                logvar,
                words,
                sent,
                batch["cap_lens"],
                batch["class_ids"] if g.class_masking else None,
                hard if mirror_g else None,
            )

        (err_g, (aux, d_stats)), cot = jax.value_and_grad(g_loss, argnums=(0, 1, 2), has_aux=True)(
            fakes, mu, logvar
        )
        (g_grads,) = g_vjp(cot)
        g_updates, g_opt = g_tx.update(g_grads, state.g_opt, state.g_params)
        g_params = optax.apply_updates(state.g_params, g_updates)
        ema = jax.tree_util.tree_map(
            lambda e, p: g.ema_decay * e + (1.0 - g.ema_decay) * p, state.ema_params, g_params
        )
        metrics.update(aux)
        metrics.update(
            errG_total=err_g,
            grad_norm_g=optax.global_norm(g_grads),
            grad_norm_d=optax.global_norm(d_grads),
            param_norm_g=optax.global_norm(g_params),
            param_norm_d=optax.global_norm(d_params),
            lr_g=jnp.asarray(g.g_lr, jnp.float32),
            lr_d=jnp.asarray(g.d_lr, jnp.float32),
        )
        new = state.replace(
            step=state.step + 1,
            g_params=g_params,
            g_stats=g_stats,
            g_opt=g_opt,
            d_params=d_params,
            d_stats=d_stats,
            d_opt=d_opt,
            ema_params=ema,
        )
        return new, metrics

    return train_step


def make_sample_fn(config, use_ema: bool = True):
    """``sample(state, batch, z, eps) -> dict``: eval-mode generator outputs with attention maps."""
    gen = build_generator(config)
    text, _ = build_encoders(config)

    def sample(state: GANState, batch: Batch, z, eps):
        words, sent, mask = encode_text(text, state.encoders, batch)
        params = state.ema_params if use_ema else state.g_params
        out = gen.apply(
            {"params": params, "batch_stats": state.g_stats},
            z,
            sent,
            words,
            mask,
            train=False,
            eps=eps,
        )
        return out

    return sample
