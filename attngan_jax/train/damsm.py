"""DAMSM pretraining (``code/pretrain_DAMSM.py``, reference §10): state, one jitted step, evaluation.

What is trained: the whole text encoder (embedding + bi-LSTM) and the image encoder's two
projection heads (``emb_features``, ``emb_cnn_code``) on top of a frozen Inception-v3 trunk, or, for
CPU-sized data (``model.image_trunk = "small"``), a small trunk trained from scratch together with
the heads.

Choices (each matching the original unless said):

* Loss ``w0 + w1 + s0 + s1`` (word loss + sentence loss, both directions, class-masked), Eq. (10)-(13).
* Adam(b1=0.5, b2=0.999); learning rate ``lr * decay**min(epoch, e_floor)`` where ``e_floor`` is the
  first epoch at which the rate has fallen to ``lr / 10`` (0.002 -> 1.999e-4 from epoch 114 on):
  :func:`lr_schedule`, an optax staircase exponential decay with a floor.
  ``reset_optimizer_each_epoch`` reproduces the original's new Adam every epoch (the training loop
  re-initialises the optimizer state at epoch boundaries).
* Gradient clipping by global norm 0.25 on the text encoder only (``clip_grad_norm`` semantics:
  scale by ``max / (norm + 1e-6)`` when that is below 1).
* The frozen Inception's BatchNorm: the original calls ``cnn_model.train()`` every epoch, so its
  BatchNorm normalises with batch statistics and its running statistics drift; the released
  ``image_encoder*.pth`` hold those drifted statistics. ``damsm.inception_bn_train=True`` (default)
  does the same; ``False`` keeps the ImageNet statistics frozen (eval-mode BatchNorm), which is the
  cleaner choice for fine-tuning on a new dataset.
* Dropout 0.5 on the word embeddings from the ``"dropout"`` rng, folded with the step.
"""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from attngan_jax import config_lib, losses
from attngan_jax.convert import clip as convert_clip
from attngan_jax.convert.inception import convert_inception_trunk
from attngan_jax.convert.torch_io import load_state_dict
from attngan_jax.data import negatives
from attngan_jax.errors import InputError
from attngan_jax.models import clip_text_encoder, factory, image_encoder
from attngan_jax.models.factory import ModelSpec
from attngan_jax.types import Batch, PRNGKey, PyTree


@flax.struct.dataclass
class DAMSMState:
    """Everything DAMSM pretraining checkpoints.

    Attributes:
        step: number of updates done.
        params: ``{"text": ..., "image": ...}`` parameters.
        batch_stats: BatchNorm statistics of the image encoder.
        opt_state: Adam state over ``params`` (frozen leaves masked out).
        rng: base key; per-step keys are ``fold_in(rng, step)``.
    """

    step: jax.Array
    params: PyTree
    batch_stats: PyTree
    opt_state: PyTree
    rng: jax.Array


def epoch_floor(decay: float, factor: float = 10.0) -> int:
    """First epoch ``e`` with ``decay**e <= 1/factor`` (114 for 0.98): the rate stops decaying there."""
    e, lr = 0, 1.0
    while lr > 1.0 / factor:
        lr *= decay
        e += 1
    return e


def lr_schedule(lr: float, decay: float, steps_per_epoch: int) -> optax.Schedule:
    """``step -> lr * decay ** min(epoch, e_floor)``, ``epoch = step // steps_per_epoch`` (§10).

    The original multiplies the rate by ``decay`` each epoch while it is above ``lr / 10``;
    ``e_floor`` (:func:`epoch_floor`) is where that stops.
    """
    # The floor is epoch e_floor's rate as the schedule computes it (float32 power), so the rate
    # stays exactly at that value from then on.
    floor = float(lr * jnp.power(jnp.float32(decay), jnp.float32(epoch_floor(decay))))
    return optax.exponential_decay(
        init_value=lr,
        transition_steps=max(steps_per_epoch, 1),
        decay_rate=decay,
        staircase=True,
        end_value=floor,
    )


def trainable_mask(spec: ModelSpec, params: PyTree) -> PyTree:
    """``params``' tree of Python bools: True for the leaves DAMSM training updates.

    The whole RNN text encoder; of the CLIP text encoder its two heads, and its tower with
    ``model.clip_text_trainable`` (never the piece table); and the image encoder's
    :func:`~attngan_jax.models.image_encoder.trainable_mask`: everything but a frozen Inception
    trunk (``model.image_trunk = "inception"``).
    """
    text = jax.tree_util.tree_map(lambda _: True, params["text"])
    if spec.text_encoder == "clip":
        text = dict(text)
        text[clip_text_encoder.TABLE] = False
        text[clip_text_encoder.TOWER] = jax.tree_util.tree_map(
            lambda _: spec.clip_text_trainable, params["text"][clip_text_encoder.TOWER]
        )
    return {
        "text": text,
        "image": image_encoder.trainable_mask(params["image"], spec.image_trunk),
    }


def make_optimizer(spec: ModelSpec, params: PyTree) -> optax.GradientTransformation:
    """Adam's moment scaling (the step multiplies by ``-lr``), frozen parameters masked out."""
    adam = optax.scale_by_adam(b1=0.5, b2=0.999, eps=1e-8)
    mask = trainable_mask(spec, params)
    return optax.chain(optax.masked(adam, mask), optax.masked(optax.set_to_zero(), _invert(mask)))


def _invert(mask: PyTree) -> PyTree:
    return jax.tree_util.tree_map(lambda b: not b, mask)


def trunk_shapes(spec: ModelSpec, image_size: int) -> PyTree:
    """``{"params": {"inception": ...}, "batch_stats": {"inception": ...}}`` shapes of the trunk."""
    params, stats = jax.eval_shape(
        lambda: factory.init_encoders(spec, jax.random.key(0), image_size)
    )
    return {
        "params": {"inception": params["image"]["inception"]},
        "batch_stats": {"inception": stats["inception"]},
    }


def load_inception_trunk(config, spec: ModelSpec, image_size: int) -> PyTree:
    """Reads and checks the trunk weights named by :func:`inception_weights_path`.

    Returns:
        The :func:`trunk_shapes` tree with numpy values, the ``trunk`` argument of
        :func:`init_state`.
    """
    path = config_lib.inception_weights_path(config)
    if path is None:
        raise ValueError("load_inception_trunk: no trunk weights are configured")
    expected = trunk_shapes(spec, image_size)
    return convert_inception_trunk(load_state_dict(path), expected, source=path)


def init_state(
    spec: ModelSpec,
    rng: PRNGKey,
    image_size: int,
    tx: optax.GradientTransformation,
    trunk: PyTree | None = None,
    text: PyTree | None = None,
) -> DAMSMState:
    """Initial state (use ``jax.eval_shape`` on this for abstract targets).

    Args:
        spec: the model spec (``attngan_jax.models.factory``).
        rng: key of the random initialisation.
        image_size: the image encoder's input size.
        tx: the optimizer (:func:`optimizer_for`).
        trunk: pretrained Inception trunk (:func:`load_inception_trunk`) replacing the random one;
            under ``jax.jit`` the random trunk is then dead code. None keeps every weight random.
        text: entries replacing those of the text encoder's parameters (:func:`clip_text_init`:
            the CLIP encoder's piece table and pretrained tower).
    """
    k_vars, k_state = jax.random.split(rng)
    params, batch_stats = factory.init_encoders(spec, k_vars, image_size)
    if trunk is not None:
        params = {**params, "image": {**params["image"], **trunk["params"]}}
        batch_stats = {**batch_stats, **trunk["batch_stats"]}
    if text is not None:
        params = {**params, "text": {**params["text"], **text}}
    return DAMSMState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=batch_stats,
        opt_state=tx.init(params),
        rng=k_state,
    )


def clip_text_init(config, spec: ModelSpec, ixtoword) -> PyTree | None:
    """The ``text`` argument of :func:`init_state` for the CLIP text encoder, else None.

    The piece table of the vocabulary, and, with ``model.clip`` set, the text side of that
    converted CLIP (``python -m attngan_jax.convert.clip``); its spec must be ``spec.clip``.
    """
    if spec.text_encoder != "clip":
        return None
    text = {clip_text_encoder.TABLE: clip_text_encoder.piece_table(ixtoword, spec.clip_word_pieces)}
    if config.model.clip:
        clip_spec, variables = convert_clip.load(config.model.clip)
        if clip_spec != spec.clip:
            raise InputError(
                f"--config.model.clip={config.model.clip!r} holds {clip_spec}, not the model's "
                f"{spec.clip}; convert again or point at the directory the model was built from"
            )
        text[clip_text_encoder.TOWER] = clip_text_encoder.text_params(variables["params"])
    return text


def optimizer_for(spec: ModelSpec, image_size: int) -> optax.GradientTransformation:
    """The optimizer, built from the abstract parameter structure (nothing is materialised)."""
    params, _ = jax.eval_shape(lambda: factory.init_encoders(spec, jax.random.key(0), image_size))
    return make_optimizer(spec, params)


def clip_by_global_norm_torch(tree: PyTree, max_norm: float) -> tuple[PyTree, jax.Array]:
    """``torch.nn.utils.clip_grad_norm_``: scale by ``max/(norm+1e-6)`` if that is < 1."""
    norm = optax.global_norm(tree)
    scale = jnp.minimum(1.0, max_norm / (norm + 1e-6))
    return jax.tree_util.tree_map(lambda g: g * scale, tree), norm


def loss_options(config) -> dict:
    """The keyword arguments of :func:`damsm_losses` that an experiment config sets."""
    d = config.damsm
    return dict(
        gammas=(d.gamma1, d.gamma2, d.gamma3),
        use_class_ids=bool(d.class_masking or d.mirror_negatives),
        inception_bn_train=bool(d.inception_bn_train),
    )


def damsm_losses(
    spec: ModelSpec,
    text,
    image,
    params,
    batch_stats,
    batch: Batch,
    rng,
    train: bool,
    *,
    gammas: tuple[float, float, float],
    use_class_ids: bool,
    inception_bn_train: bool,
    shape_tables=None,
):
    """Forward both encoders and the four DAMSM losses.

    With ``shape_tables`` (:func:`~attngan_jax.data.negatives.shape_word_table`,
    ``damsm.reshape_negatives``) each image's caption with one shape renamed joins its row of
    ``w0``/``s0`` as a further negative.

    Args:
        spec: the model spec.
        text, image: the text and image encoder modules (:mod:`attngan_jax.models.factory`).
        params: ``{"text": ..., "image": ...}``.
        batch_stats: the image encoder's BatchNorm statistics.
        batch: captions, lengths, class ids and the largest stage's images.
        rng: dropout key.
        train: dropout on, and batch statistics where ``inception_bn_train`` says so.
        gammas: ``(gamma1, gamma2, gamma3)`` of Eq. (9)-(11) (``damsm.gamma1/2/3``).
        use_class_ids: pass ``batch["class_ids"]`` to the losses, which then do not count
            same-class pairs as negatives (``damsm.class_masking``; mirrored negatives need it).
        inception_bn_train: with ``train``, the frozen Inception trunk's BatchNorm uses batch
            statistics as the original (``damsm.inception_bn_train``); the small trunk always does.
        shape_tables: see above; None for none.

    Returns:
        ``(total, (metrics, new_batch_stats, aux))`` with aux holding codes for retrieval metrics.
    """
    gamma1, gamma2, gamma3 = gammas
    images = batch[f"image_{max(spec.image_sizes)}"]
    bn_train = train and (spec.image_trunk == "small" or inception_bn_train)
    image_params = params["image"]
    if spec.image_trunk == "inception" and "inception" in image_params:
        # The trunk is frozen: no gradient through its parameters (the original never runs this
        # backward either): much faster DAMSM steps, identical loss (docs/performance.md).
        image_params = {
            **image_params,
            "inception": jax.lax.stop_gradient(image_params["inception"]),
        }
    img_vars = {"params": image_params, "batch_stats": batch_stats}
    if bn_train:
        (features, cnn_code), upd = image.apply(
            img_vars, images, train=True, mutable=["batch_stats"]
        )
        new_stats = upd["batch_stats"]
    else:
        features, cnn_code = image.apply(img_vars, images, train=False)
        new_stats = batch_stats
    words_emb, sent_emb = text.apply(
        {"params": params["text"]},
        batch["captions"],
        batch["cap_lens"],
        train=train,
        rngs={"dropout": rng},
    )
    class_ids = batch["class_ids"] if use_class_ids else None
    hard_w = hard_s = None
    if shape_tables is not None:  # damsm.reshape_negatives
        caps, valid = negatives.reshape_captions(
            batch["captions"], shape_tables, jax.random.fold_in(rng, 1)
        )
        hard_words, hard_sent = text.apply(
            {"params": params["text"]},
            caps,
            batch["cap_lens"],
            train=train,
            rngs={"dropout": jax.random.fold_in(rng, 2)},
        )
        hard_w, hard_s = losses.hard_caption_scores(
            features, cnn_code, hard_words, hard_sent, batch["cap_lens"], valid,
            gamma1, gamma2, gamma3,
        )  # fmt: skip
    w0, w1, _ = losses.words_loss(
        features, words_emb, batch["cap_lens"], class_ids, gamma1, gamma2, gamma3, hard_w
    )
    s0, s1 = losses.sent_loss(cnn_code, sent_emb, class_ids, gamma3, hard_s)
    total = w0 + w1 + s0 + s1
    metrics = {"w_loss0": w0, "w_loss1": w1, "s_loss0": s0, "s_loss1": s1, "loss": total}
    return total, (metrics, new_stats, {"cnn_code": cnn_code, "sent_emb": sent_emb})


def make_train_step(
    config,
    spec: ModelSpec,
    tx: optax.GradientTransformation,
    steps_per_epoch: int,
    tables=None,
    shape_tables=None,
):
    """``train_step(state, batch) -> (state, metrics)``; pure, to be jitted once.

    ``tables`` (from :func:`~attngan_jax.data.negatives.swap_tables`) turns on
    :func:`~attngan_jax.data.negatives.add_mirrored_negatives`; ``shape_tables`` (from
    :func:`~attngan_jax.data.negatives.shape_word_table`) the renamed-shape negatives.
    """
    text, image = factory.text_encoder(spec), factory.image_encoder(spec)
    options = loss_options(config)
    schedule = lr_schedule(config.damsm.lr, config.damsm.lr_decay, steps_per_epoch)

    def train_step(state: DAMSMState, batch: Batch):
        if tables is not None:
            key = f"image_{max(spec.image_sizes)}"
            batch = negatives.add_mirrored_negatives(batch, key, tables)
        rng = jax.random.fold_in(state.rng, state.step)

        def loss_fn(params):
            return damsm_losses(
                spec, text, image, params, state.batch_stats, batch, rng, True,
                shape_tables=shape_tables, **options,
            )  # fmt: skip

        (_, (metrics, new_stats, _)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params
        )
        text_grads, text_norm = clip_by_global_norm_torch(grads["text"], config.damsm.rnn_grad_clip)
        grads = {"text": text_grads, "image": grads["image"]}
        lr = schedule(state.step)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        # Frozen leaves (the Inception trunk) are passed through as they are. ``p + -lr * 0``
        # is not folded for floats, so the whole trunk used to be rewritten in place every step,
        # after XLA had copied each of its kernels for the convolutions that read them.
        mask = trainable_mask(spec, state.params)
        params = jax.tree_util.tree_map(
            lambda p, u, t: p - lr * u if t else p, state.params, updates, mask
        )
        image_leaves = jax.tree_util.tree_leaves(params["image"])
        image_trained = [
            p for p, t in zip(image_leaves, jax.tree_util.tree_leaves(mask["image"])) if t
        ]
        text_trained = [
            p
            for p, t in zip(
                jax.tree_util.tree_leaves(params["text"]), jax.tree_util.tree_leaves(mask["text"])
            )
            if t
        ]
        metrics = dict(metrics)
        metrics.update(
            lr=lr,
            grad_norm_text=text_norm,
            grad_norm_image=optax.global_norm(grads["image"]),
            param_norm_text=optax.global_norm(text_trained),  # the trained leaves
            param_norm_image=optax.global_norm(image_trained),  # the trained leaves
        )
        new = state.replace(
            step=state.step + 1, params=params, batch_stats=new_stats, opt_state=opt_state
        )
        return new, metrics

    return train_step


def make_eval_step(config, spec: ModelSpec, shape_tables=None):
    """``eval_step(state, batch) -> metrics``: losses and in-batch retrieval accuracy (eval mode).

    With ``shape_tables`` (:func:`~attngan_jax.data.negatives.shape_word_table`) also
    ``shape_accuracy``: how often an image's sentence code is closer to its caption than to the
    caption with one shape renamed (0.5 is blind to shapes).
    """
    text, image = factory.text_encoder(spec), factory.image_encoder(spec)
    options = loss_options(config)

    def eval_step(state: DAMSMState, batch: Batch):
        _, (metrics, _, aux) = damsm_losses(
            spec, text, image, state.params, state.batch_stats, batch, state.rng, False, **options
        )
        img = aux["cnn_code"] / (jnp.linalg.norm(aux["cnn_code"], axis=-1, keepdims=True) + 1e-8)
        snt = aux["sent_emb"] / (jnp.linalg.norm(aux["sent_emb"], axis=-1, keepdims=True) + 1e-8)
        sim = img @ snt.T  # (B images, B sentences)
        labels = jnp.arange(sim.shape[0])
        metrics = dict(metrics)
        metrics["retrieval_i2t"] = jnp.mean((jnp.argmax(sim, axis=1) == labels).astype(jnp.float32))
        metrics["retrieval_t2i"] = jnp.mean((jnp.argmax(sim, axis=0) == labels).astype(jnp.float32))
        if shape_tables is not None:
            caps, valid = negatives.reshape_captions(batch["captions"], shape_tables, state.rng)
            _, other = text.apply(
                {"params": state.params["text"]}, caps, batch["cap_lens"], train=False
            )
            other = other / (jnp.linalg.norm(other, axis=-1, keepdims=True) + 1e-8)
            wins = jnp.sum(img * snt, axis=-1) > jnp.sum(img * other, axis=-1)
            w = valid.astype(jnp.float32)
            metrics["shape_accuracy"] = jnp.sum(w * wins) / jnp.maximum(jnp.sum(w), 1.0)
        return metrics

    return eval_step


def mean_metrics(items: list[dict]) -> dict[str, float]:
    """Averages a list of metric dicts on the host."""
    keys = items[0].keys()
    return {k: float(np.mean([float(m[k]) for m in items])) for k in keys}
