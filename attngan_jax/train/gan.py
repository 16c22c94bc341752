"""AttnGAN training (``code/trainer.py``, reference §11): state, and one jitted step per iteration.

Update order (the original's, which differs from the simultaneous update of XMC-GAN/MAGVIT); each
numbered part is one function that :func:`make_train_step`'s step calls in this order:

1. :func:`encode_text`: text encoder (frozen, eval mode) -> words (B, T, D), sentence (B, D);
   mask = ``captions == 0``. :func:`hard_captions` encodes the hard negatives, if any.
2. :func:`g_forward`: ONE generator forward in train mode (BatchNorm batch statistics) with ``z`` and the CA noise
   ``eps`` drawn from ``fold_in(rng, step)`` (named splits ``"z"``, ``"ca"``), kept as a ``jax.vjp``.
3. :func:`d_update`: every discriminator ``D_i`` is updated on (real_i, detached fake_i):
   real/fake/mismatched terms.
4. :func:`g_update`: the generator loss (:func:`attngan_jax.losses.generator_loss`) is evaluated
   through the *updated* discriminators on the *same* fakes (adversarial terms of every stage +
   λ·DAMSM on the last stage + KL) and the generator is updated. Gradients are taken with respect
   to the fakes only and pulled back through the stored forward: unlike the original, no gradient
   is computed for the discriminators' parameters during the generator update (the original
   computes and discards them), with equal results.
5. :func:`ema_update`: EMA of the generator parameters (decay 0.999; parameters only, as the
   original).

Adam(b1=0.5, b2=0.999) per player (one optax transform over the dict of discriminators: Adam is
element-wise, so this equals one optimizer per discriminator).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import flax
import jax
import jax.numpy as jnp
import optax

from attngan_jax import losses
from attngan_jax.data import negatives
from attngan_jax.models import factory
from attngan_jax.models.factory import ModelSpec
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


def make_optimizers(config) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
    """(generator Adam, discriminators Adam) with the original's betas."""
    g = config.gan
    g_tx = optax.adam(g.g_lr, b1=g.beta1, b2=g.beta2)
    d_tx = optax.adam(g.d_lr, b1=g.beta1, b2=g.beta2)
    return g_tx, d_tx


def init_state(config, spec: ModelSpec, rng: PRNGKey, encoders: PyTree) -> GANState:
    """Fresh generator/discriminators (the original's ``weights_init``) and given encoders."""
    k_g, k_d, k_state = jax.random.split(rng, 3)
    g_vars = factory.init_generator(spec, k_g)
    d_params, d_stats = factory.init_discriminators(spec, k_d)
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


# ----------------------------------------------------------------------------- 1. text
def encode_text(text, encoders: PyTree, batch: Batch):
    """Frozen text encoder: (words (B, L, D), sentence (B, D), mask (B, L) True at padding)."""
    words, sent = text.apply(encoders["text"], batch["captions"], batch["cap_lens"], train=False)
    mask = batch["captions"] == 0
    return jax.lax.stop_gradient(words), jax.lax.stop_gradient(sent), mask


def hard_captions(
    text, encoders: PyTree, batch: Batch, tables, colour_ids, rng: PRNGKey, shape_tables=None
):
    """The hard mismatched captions of a batch, encoded (``gan.mirror_negatives_d/_g``).

    Kind 0: each caption with a position word is mirrored (:func:`negatives.mirror_captions`);
    with ``colour_ids`` (``gan.recolour_negatives``) half of the captions naming two colours get,
    instead of their mirror, a caption whose last-named colour is renamed
    (:func:`negatives.recolour_captions`). Kind 1, with ``shape_tables``
    (``gan.reshape_negatives``): each caption with one object's shape renamed
    (:func:`negatives.reshape_captions`).

    Returns:
        ``{"words" (K, B, L, D), "sent" (K, B, D), "valid" (K, B) bool}`` for K kinds; ``valid``
        is False where the caption has no hard negative of that kind.
    """
    caps_m, _, changed = negatives.mirror_captions(batch["captions"], tables)
    if colour_ids is not None:
        # A key of its own (fold_in), so z and eps stay the draws they are without it.
        k_draw, k_pick = jax.random.split(jax.random.fold_in(rng, 2))
        caps_r, recoloured = negatives.recolour_captions(batch["captions"], colour_ids, k_draw)
        pick = recoloured & jax.random.bernoulli(k_pick, 0.5, recoloured.shape)
        caps_m = jnp.where(pick[:, None], caps_r, caps_m)
        changed = changed | pick
    kinds, valid = [caps_m], [changed]
    if shape_tables is not None:
        caps_s, reshaped = negatives.reshape_captions(
            batch["captions"], shape_tables, jax.random.fold_in(rng, 3)
        )
        kinds.append(caps_s)
        valid.append(reshaped)
    k, bsz = len(kinds), batch["captions"].shape[0]
    words_h, sent_h, _ = encode_text(
        text,
        encoders,
        {"captions": jnp.concatenate(kinds), "cap_lens": jnp.tile(batch["cap_lens"], k)},
    )
    return {
        "words": words_h.reshape(k, bsz, *words_h.shape[1:]),
        "sent": sent_h.reshape(k, bsz, -1),
        "valid": jnp.stack(valid),
    }


# ----------------------------------------------------------------------------- 3. discriminators
def d_update(
    discs: dict,
    d_tx: optax.GradientTransformation,
    state: GANState,
    reals: dict[str, jax.Array],
    fakes: tuple[jax.Array, ...],
    sent: jax.Array,
    hard: dict | None,
    dups: dict[str, jax.Array] | None = None,
) -> tuple[PyTree, PyTree, PyTree, PyTree, dict]:
    """One Adam step of every discriminator on (real, detached fake, mismatched) (ref. §8.5).

    Args:
        discs: ``{"d<i>": Discriminator}``.
        d_tx: their optimizer.
        state: the state before the step (``d_params``, ``d_stats``, ``d_opt``).
        reals: ``{"d<i>": (B, S_i, S_i, 3)}`` real images of each discriminator's stage.
        fakes: per stage (B, S_i, S_i, 3) generated images (no gradient flows into G from here).
        sent: (B, D) sentence vectors.
        hard: hard mismatched captions (:func:`hard_captions`) for the conditional logits, or None.
        dups: ``{"d<i>": (B, S_i, S_i, 3)}`` real images with their objects drawn twice
            (``gan.duplicate_negatives``), or None.

    Returns:
        ``(d_params, d_stats, d_opt, d_grads, metrics)``; metrics has ``errD<i>``,
        ``D<i>_real_prob``, ``D<i>_fake_prob`` (and ``D<i>_mirror_prob`` with ``hard``).
    """
    metrics, d_grads, d_stats = {}, {}, {}
    for name, d in discs.items():
        i = int(name[1:])

        def d_loss(p, d=d, name=name, i=i):
            err, st, lg = losses.discriminator_loss(
                d.apply,
                p,
                state.d_stats[name],
                reals[name],
                fakes[i],
                sent,
                d.uncond,
                hard_sent_emb=None if hard is None else hard["sent"],
                hard_valid=None if hard is None else hard["valid"],
                dup_images=None if dups is None else dups[name],
            )
            return err, (st, lg)

        (err, (st, lg)), grad = jax.value_and_grad(d_loss, has_aux=True)(state.d_params[name])
        d_grads[name], d_stats[name] = grad, st
        metrics[f"errD{i}"] = err
        metrics[f"D{i}_real_prob"] = jnp.mean(jax.nn.sigmoid(lg["cond_real"]))
        metrics[f"D{i}_fake_prob"] = jnp.mean(jax.nn.sigmoid(lg["cond_fake"]))
        if hard is not None:
            metrics[f"D{i}_mirror_prob"] = jnp.mean(jax.nn.sigmoid(lg["cond_hard"]))
        if dups is not None:
            metrics[f"D{i}_dup_prob"] = jnp.mean(jax.nn.sigmoid(lg["cond_dup"]))
    d_updates, d_opt = d_tx.update(d_grads, state.d_opt, state.d_params)
    d_params = optax.apply_updates(state.d_params, d_updates)
    return d_params, d_stats, d_opt, d_grads, metrics


# ----------------------------------------------------------------------------- 4. generator
def g_update(
    g_tx: optax.GradientTransformation,
    state: GANState,
    g_vjp: Callable,
    loss_fn: Callable,
    fakes: tuple[jax.Array, ...],
    mu: jax.Array,
    logvar: jax.Array,
) -> tuple[PyTree, PyTree, PyTree, jax.Array, tuple[dict, PyTree]]:
    """One Adam step of the generator from its loss on the stored forward's outputs.

    Args:
        g_tx: the generator's optimizer.
        state: the state before the step (``g_params``, ``g_opt``).
        g_vjp: the pull-back of the generator forward ``g_params -> (fakes, mu, logvar)``.
        loss_fn: ``(fakes, mu, logvar) -> (loss, aux)`` through the updated discriminators
            (:func:`attngan_jax.losses.generator_loss` with everything else bound).
        fakes, mu, logvar: the forward's outputs.

    Returns:
        ``(g_params, g_opt, g_grads, loss, aux)``.
    """
    (err_g, aux), cot = jax.value_and_grad(loss_fn, argnums=(0, 1, 2), has_aux=True)(
        fakes, mu, logvar
    )
    (g_grads,) = g_vjp(cot)
    g_updates, g_opt = g_tx.update(g_grads, state.g_opt, state.g_params)
    g_params = optax.apply_updates(state.g_params, g_updates)
    return g_params, g_opt, g_grads, err_g, aux


# ----------------------------------------------------------------------------- 5. EMA
def ema_update(ema_params: PyTree, params: PyTree, decay: float) -> PyTree:
    """``decay * ema + (1 - decay) * params``, leaf by leaf (the original's ``avg_param_G``)."""
    return jax.tree_util.tree_map(lambda e, p: decay * e + (1.0 - decay) * p, ema_params, params)


# ----------------------------------------------------------------------------- 2. generator forward
def g_forward(gen, state: GANState, z, sent, words, mask, eps):
    """ONE generator forward in train mode, kept as a ``jax.vjp`` for the pull-back of step 4.

    Returns:
        ``((fakes per stage (B, S_i, S_i, 3) float32, mu, logvar), g_vjp, new g_stats)``.
    """

    def forward(g_params):
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

    return jax.vjp(forward, state.g_params, has_aux=True)


# ----------------------------------------------------------------------------- the step
def hard_negative_tables(g, ixtoword) -> tuple:
    """``(swap tables, colour ids, shape tables)`` of the hard negatives ``gan.*`` turns on.

    Raises:
        ValueError: a negative that changes the mirrored captions without them, or hard
            negatives without the vocabulary.
    """
    hard_negatives = g.mirror_negatives_d or g.mirror_negatives_g
    if g.recolour_negatives and not hard_negatives:
        raise ValueError(
            "gan.recolour_negatives changes the hard captions of gan.mirror_negatives_d/_g: "
            "turn on at least one of them"
        )
    if hard_negatives and ixtoword is None:
        raise ValueError(
            "gan.mirror_negatives_d/_g and gan.recolour_negatives need the vocabulary: pass "
            "ixtoword to make_train_step"
        )
    if g.reshape_negatives and not hard_negatives:
        raise ValueError(
            "gan.reshape_negatives adds hard captions to gan.mirror_negatives_d/_g: turn on at "
            "least one of them"
        )
    tables = negatives.swap_tables(ixtoword) if hard_negatives else None
    colour_ids = negatives.colour_word_ids(ixtoword) if g.recolour_negatives else None
    shape_tables = negatives.shape_word_table(ixtoword) if g.reshape_negatives else None
    return tables, colour_ids, shape_tables


def make_train_step(config, spec: ModelSpec, ixtoword=None):
    """``train_step(state, batch) -> (state, metrics)``: one full AttnGAN iteration, pure.

    Hard negatives (not in the original; in-batch mismatched pairs almost always differ in the
    first colour, so neither player has to learn positions or the second object without them):
    with ``gan.mirror_negatives_d`` / ``_g`` the captions of :func:`hard_captions` are hard
    mismatched texts for the discriminators' conditional logits (``_d``) and extra negatives of
    the generator's DAMSM term (``_g``); ``gan.recolour_negatives`` adds recoloured captions to
    them and ``gan.reshape_negatives`` a second kind, captions with one object's shape renamed.
    The metrics ``D<i>_mirror_prob`` cover every hard caption. ``gan.duplicate_negatives`` shows
    the discriminators real images with every object drawn twice as mismatches
    (``D<i>_dup_prob``).

    Args:
        config: experiment config (``gan.*``).
        spec: the networks (:class:`attngan_jax.models.factory.ModelSpec`).
        ixtoword: the vocabulary's words by id; required by the hard negatives above.
    """
    gen, discs = factory.generator(spec), factory.discriminators(spec)
    text, image = factory.text_encoder(spec), factory.image_encoder(spec)
    g_tx, d_tx = make_optimizers(config)
    g = config.gan
    sizes = spec.stage_sizes
    tables, colour_ids, shape_tables = hard_negative_tables(g, ixtoword)

    def train_step(state: GANState, batch: Batch):
        rng = jax.random.fold_in(state.rng, state.step)
        k_z, k_eps = jax.random.split(rng)
        # 1. Text features (and the hard negatives' features).
        words, sent, mask = encode_text(text, state.encoders, batch)
        hard = None
        if tables is not None:
            hard = hard_captions(text, state.encoders, batch, tables, colour_ids, rng, shape_tables)
        z = jax.random.normal(k_z, (sent.shape[0], spec.z_dim))
        eps = jax.random.normal(k_eps, (sent.shape[0], spec.condition_dim))
        # 2. One generator forward, kept for the pull-back of step 4 (gan.mode_seeking: on
        #    [z; z2] for the same captions, 2B rows; the discriminators see the z half).
        z2 = None
        if g.mode_seeking > 0:
            z2 = jax.random.normal(jax.random.fold_in(rng, 1), z.shape)
            two = functools.partial(jnp.concatenate, axis=0)
            g_out, g_vjp, g_stats = g_forward(
                gen, state, two([z, z2]), two([sent, sent]), two([words, words]),
                two([mask, mask]), two([eps, eps]),
            )  # fmt: skip
            fakes = tuple(x[: z.shape[0]] for x in g_out[0])
        else:
            g_out, g_vjp, g_stats = g_forward(gen, state, z, sent, words, mask, eps)
            fakes = g_out[0]
        # 3. Discriminators on (real, detached fake).
        reals = {name: batch[f"image_{sizes[int(name[1:])]}"] for name in discs}
        dups = None
        if g.duplicate_negatives:
            dups = {name: negatives.duplicate_objects(x) for name, x in reals.items()}
        hard_d = hard if g.mirror_negatives_d else None
        d_params, d_stats, d_opt, d_grads, metrics = d_update(
            discs, d_tx, state, reals, fakes, sent, hard_d, dups
        )
        # 4. Generator through the updated discriminators, gradients w.r.t. the fakes only.
        g_loss = functools.partial(
            _g_loss, discs, d_params, d_stats, image, state.encoders["image"], words=words,
            sent=sent, cap_lens=batch["cap_lens"],
            class_ids=batch["class_ids"] if g.class_masking else None,
            hard=hard if g.mirror_negatives_g else None, weights=g,
        )  # fmt: skip
        if z2 is not None:
            g_loss = functools.partial(_with_mode_seeking, g_loss, z, z2, g.mode_seeking)
        g_params, g_opt, g_grads, err_g, (aux, d_stats) = g_update(
            g_tx, state, g_vjp, g_loss, *g_out
        )
        # 5. EMA of the generator parameters.
        ema = ema_update(state.ema_params, g_params, g.ema_decay)
        metrics.update(aux)
        metrics.update(_norms_and_rates(g, err_g, g_grads, d_grads, g_params, d_params))
        new = state.replace(
            step=state.step + 1, g_params=g_params, g_stats=g_stats, g_opt=g_opt,
            d_params=d_params, d_stats=d_stats, d_opt=d_opt, ema_params=ema,
        )  # fmt: skip
        return new, metrics

    return train_step


def _g_loss(discs, d_params, d_stats, image, image_vars, fakes, mu, logvar, *, words, sent,
            cap_lens, class_ids, hard, weights):  # fmt: skip
    """:func:`attngan_jax.losses.generator_loss` with the step's weights (``gan.gamma*``, λ)."""
    return losses.generator_loss(
        discs, d_params, d_stats, image, image_vars, fakes, mu, logvar, words, sent, cap_lens,
        class_ids, gamma1=weights.gamma1, gamma2=weights.gamma2, gamma3=weights.gamma3,
        lam=weights.lam, hard=hard,
    )  # fmt: skip


def _with_mode_seeking(g_loss, z, z2, weight: float, fakes, mu, logvar):
    """``g_loss`` on the z half of a [z; z2] forward plus ``weight`` x the mode-seeking term."""
    b = z.shape[0]
    first, second = tuple(x[:b] for x in fakes), tuple(x[b:] for x in fakes)
    err, (aux, d_stats) = g_loss(first, mu[:b], logvar[:b])
    ms = losses.mode_seeking_loss(first, second, z, z2)
    return err + weight * ms, ({**aux, "ms_loss": ms}, d_stats)


def _norms_and_rates(g, err_g, g_grads, d_grads, g_params, d_params) -> dict:
    """The step's logged norms (per player) and learning rates."""
    return dict(
        errG_total=err_g,
        grad_norm_g=optax.global_norm(g_grads),
        grad_norm_d=optax.global_norm(d_grads),
        param_norm_g=optax.global_norm(g_params),
        param_norm_d=optax.global_norm(d_params),
        lr_g=jnp.asarray(g.g_lr, jnp.float32),
        lr_d=jnp.asarray(g.d_lr, jnp.float32),
    )
