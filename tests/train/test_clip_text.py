"""The CLIP text encoder through training: DAMSM then GAN, export, sampling; frozen vs fine-tuned."""

import jax
import numpy as np
import pytest

from attngan_jax import config_lib, model_dir
from attngan_jax.configs import shapes as shapes_config
from attngan_jax.convert import clip as convert_clip
from attngan_jax.errors import InputError
from attngan_jax.eval import sampling
from attngan_jax.models import clip as clip_lib
from attngan_jax.models import factory
from attngan_jax.models.clip_text_encoder import piece_table
from attngan_jax.train import damsm, experiment


def _config(tmp_path, phase="demo", **model):
    c = shapes_config.build(phase, "tiny")
    c.data.data_dir = str(tmp_path / "data")
    c.model.text_encoder = "clip"
    c.model.clip_preset = "tiny"
    for k, v in model.items():
        c.model[k] = v
    return c


@pytest.mark.slow
def test_demo_with_clip_trains_exports_and_samples(tmp_path):
    """shapes:tiny with every hard negative (they swap vocabulary ids), DAMSM, GAN, sampling."""
    config = _config(tmp_path)
    assert config.damsm.mirror_negatives and config.gan.recolour_negatives  # the shapes config's
    config.damsm.reshape_negatives = config.gan.reshape_negatives = True  # and the other ones
    summary = experiment.train_and_evaluate(config, str(tmp_path / "run"))
    assert summary["final_step"] == 2
    gan_dir = str(tmp_path / "run" / "attngan")
    spec = model_dir.load_spec(gan_dir)
    assert spec.text_encoder == "clip" and spec.clip == factory.CLIP_TINY_TEXT
    out = sampling.generate(gan_dir, ["a red circle", "a blue square above a green triangle"])
    assert out["images"][-1].shape[:2] == (2, 1)
    assert np.all(np.isfinite(out["images"][-1]))
    # the exported piece table is the vocabulary's
    vocab = experiment.load_vocabulary(experiment.prepare_data(config))
    enc = model_dir.load_damsm(gan_dir)["text"]["params"]
    np.testing.assert_array_equal(enc["vocab_pieces"], piece_table(vocab.ixtoword, 8))


def _damsm_params(config, steps, text_init):
    data = experiment.prepare_data(config)
    vocab = experiment.load_vocabulary(data)
    spec = factory.ModelSpec.from_config(config, len(vocab))
    size = max(config_lib.image_sizes(config))
    tx = damsm.optimizer_for(spec, size)
    text = damsm.clip_text_init(config, spec, vocab.ixtoword) if text_init else None
    state = damsm.init_state(spec, jax.random.key(0), size, tx, text=text)
    step = jax.jit(damsm.make_train_step(config, spec, tx, steps_per_epoch=100))
    loader = experiment.make_loader(config, data, "train", config.damsm.batch_size, 0, True)
    start = jax.tree_util.tree_map(np.asarray, state.params["text"])
    for _, batch in zip(range(steps), loader):
        batch = {k: v for k, v in batch.items() if k != "keys"}
        state, metrics = step(state, batch)
        assert np.isfinite(float(metrics["loss"]))
    return start, jax.tree_util.tree_map(np.asarray, state.params["text"])


@pytest.mark.slow
@pytest.mark.parametrize("trainable", [False, True])
def test_frozen_tower_is_unchanged_by_damsm_steps_and_the_heads_learn(tmp_path, trainable):
    config = _config(tmp_path, "damsm", clip_text_trainable=trainable)
    before, after = _damsm_params(config, 2, text_init=True)

    def changed(a, b):
        return any(
            not np.array_equal(x, y) for x, y in zip(*map(jax.tree_util.tree_leaves, (a, b)))
        )

    assert changed(before["clip"], after["clip"]) == trainable
    assert changed(before["word_head"], after["word_head"])
    assert changed(before["sent_head"], after["sent_head"])
    np.testing.assert_array_equal(before["vocab_pieces"], after["vocab_pieces"])


def test_pretrained_tower_is_loaded_from_a_converted_directory(tmp_path):
    spec = factory.CLIP_TINY_TEXT
    variables = jax.tree_util.tree_map(
        np.asarray, jax.jit(lambda: jax.tree_util.tree_map(
            lambda x: x, clip_lib.build(spec).init(
                jax.random.key(7), np.zeros((1, 32, 32, 3), np.float32),
                np.zeros((1, 77), np.int32))))()
    )  # fmt: skip
    convert_clip.save(str(tmp_path / "clip"), spec, variables)
    config = _config(tmp_path, "damsm", clip=str(tmp_path / "clip"), clip_preset="")
    config_lib.validate(config)
    before, _ = _damsm_params(config, 0, text_init=True)
    want = variables["params"]["transformer"]["resblocks_1"]["mlp"]["c_fc"]["kernel"]
    got = before["clip"]["transformer"]["resblocks_1"]["mlp"]["c_fc"]["kernel"]
    np.testing.assert_array_equal(got, want)
    assert "visual" not in before["clip"]


@pytest.mark.parametrize(
    "model, flag",
    [
        ({}, "--config.model.clip_preset"),  # neither a directory nor a preset
        ({"clip_preset": "tiny", "clip": "x"}, "--config.model.clip"),  # both
        ({"clip_preset": "ViT-Z-99"}, "--config.model.clip_preset='ViT-Z-99'"),
        ({"clip": "/nonexistent", "clip_preset": ""}, "python -m attngan_jax.convert.clip"),
        ({"text_encoder": "bert"}, "--config.model.text_encoder='bert'"),
        ({"text_encoder": "rnn", "clip_preset": "tiny"}, "--config.model.text_encoder=clip"),
    ],
)
def test_bad_combinations_name_the_flag_and_the_fix(tmp_path, model, flag):
    config = _config(tmp_path, clip_preset="")
    for k, v in model.items():
        config.model[k] = v
    with pytest.raises(InputError, match=None) as e:
        config_lib.validate(config)
    assert flag in str(e.value), str(e.value)
