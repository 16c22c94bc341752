"""DAMSM pretraining's frozen Inception trunk starts from torchvision's ImageNet weights."""

import jax
import numpy as np
import pytest
from specs import spec_of

from attngan_jax import config_lib
from attngan_jax.configs import damsm_birds
from attngan_jax.configs import shapes as shapes_config
from attngan_jax.convert.common import ConversionError
from attngan_jax.parity import load_case, split_arrays
from attngan_jax.train import damsm, experiment


@pytest.fixture(scope="module")
def torchvision_npz(parity_dir, tmp_path_factory):
    """The f_inception fixture's torchvision-keyed weights (with fc and AuxLogits) as an .npz."""
    _, arrays = load_case(parity_dir, "f_inception")
    weights = split_arrays(arrays)[0]
    path = tmp_path_factory.mktemp("weights") / "inception_v3_google.npz"
    np.savez(path, **{k: np.asarray(v) for k, v in weights.items()})
    return str(path), weights


def damsm_config(weights=""):
    c = damsm_birds.get_config()
    c.damsm.inception_weights = weights
    return c


def test_trunk_weights_are_read_into_the_state_tree(torchvision_npz):
    path, weights = torchvision_npz
    config = damsm_config(path)
    tx = damsm.optimizer_for(spec_of(config), 299)
    trunk = damsm.load_inception_trunk(config, spec_of(config), 299)
    inception = trunk["params"]["inception"]
    np.testing.assert_array_equal(  # torch (O, I, kh, kw) -> Flax (kh, kw, I, O)
        inception["Mixed_7c"]["branch3x3dbl_3b"]["conv"]["kernel"],
        weights["Mixed_7c.branch3x3dbl_3b.conv.weight"].transpose(2, 3, 1, 0),
    )
    np.testing.assert_array_equal(
        inception["Conv2d_1a_3x3"]["bn"]["scale"], weights["Conv2d_1a_3x3.bn.weight"]
    )
    np.testing.assert_array_equal(
        trunk["batch_stats"]["inception"]["Mixed_6e"]["branch_pool"]["bn"]["var"],
        weights["Mixed_6e.branch_pool.bn.running_var"],
    )
    # The state built on it has the random state's tree and shapes (the abstract target of
    # compiling and restoring); the values are checked end to end below.
    shapes = lambda t: jax.tree.map(lambda a: a.shape, t)  # noqa: E731
    random = jax.eval_shape(lambda: damsm.init_state(spec_of(config), jax.random.key(0), 299, tx))
    loaded = jax.eval_shape(
        lambda t: damsm.init_state(spec_of(config), jax.random.key(0), 299, tx, t), trunk
    )
    assert jax.tree_util.tree_structure(random) == jax.tree_util.tree_structure(loaded)
    assert shapes(random) == shapes(loaded)


def test_weights_setting_is_checked_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="--config.damsm.inception_weights=PATH"):
        config_lib.inception_weights_path(damsm_config(""))
    missing = str(tmp_path / "nope.pth")
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        config_lib.inception_weights_path(damsm_config(missing))
    assert config_lib.inception_weights_path(damsm_config("random")) is None
    small = damsm_config("")
    small.model.image_trunk = "small"
    assert config_lib.inception_weights_path(small) is None
    # train_and_evaluate refuses before preparing data (manual_dir does not exist).
    config = damsm_config("")
    config.data.data_dir = str(tmp_path / "data")
    config.data.manual_dir = str(tmp_path / "no_birds_here")
    with pytest.raises(ValueError, match="inception_weights"):
        experiment.train_and_evaluate(config, str(tmp_path / "run"))
    assert not (tmp_path / "data").exists() and not (tmp_path / "run").exists()


def test_wrong_weights_file_names_the_keys(parity_dir, tmp_path):
    _, arrays = load_case(parity_dir, "b_cnn_encoder")  # the original's CNN_ENCODER: has heads
    path = tmp_path / "image_encoder.npz"
    np.savez(path, **{k: np.asarray(v) for k, v in split_arrays(arrays)[0].items()})
    config = damsm_config(str(path))
    with pytest.raises(ConversionError, match="emb_features"):
        damsm.load_inception_trunk(config, spec_of(config), 299)


def test_damsm_run_trains_on_the_given_frozen_trunk(torchvision_npz, tmp_path):
    """train.py's DAMSM phase: the trunk read from the file, still equal to it after training."""
    path, weights = torchvision_npz
    config = shapes_config.build("damsm", "tiny")
    config.data.data_dir = str(tmp_path / "data")
    config.model.image_trunk = "inception"
    config.damsm.inception_weights = path
    config.damsm.batch_size = 2
    config.damsm.num_steps = 1
    config.checkpoint_every = 1
    summary = experiment.train_and_evaluate(config, str(tmp_path / "run"))
    assert summary["final_step"] == 1
    exported = experiment.load_encoders(spec_of(config), str(tmp_path / "run"))["image"]
    np.testing.assert_array_equal(
        exported["params"]["inception"]["Mixed_5b"]["branch5x5_2"]["conv"]["kernel"],
        weights["Mixed_5b.branch5x5_2.conv.weight"].transpose(2, 3, 1, 0),
    )
    assert "emb_cnn_code" in exported["params"]


def test_damsm_step_passes_the_frozen_trunk_through():
    """The jitted step returns the trunk's leaves as they came in: no copy, no rewrite.

    ``p + (-lr * 0)`` is not folded for floats, so an optax-style update of the frozen leaves
    rewrote the whole trunk every step (and XLA copied each kernel first for its readers).
    """
    config = damsm_config("random")
    tx = damsm.optimizer_for(spec_of(config), 299)
    state = jax.eval_shape(lambda: damsm.init_state(spec_of(config), jax.random.key(0), 299, tx))
    b, words = 2, config.data.words_num
    batch = {
        "captions": jax.ShapeDtypeStruct((b, words), np.int32),
        "cap_lens": jax.ShapeDtypeStruct((b,), np.int32),
        "class_ids": jax.ShapeDtypeStruct((b,), np.int32),
        **{
            f"image_{s}": jax.ShapeDtypeStruct((b, s, s, 3), np.float32)
            for s in config_lib.image_sizes(config)
        },
    }
    step = damsm.make_train_step(config, spec_of(config), tx, steps_per_epoch=10)
    jaxpr = jax.make_jaxpr(step)(state, batch).jaxpr
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(state)[0]]
    n_trunk = 0
    for i, path in enumerate(paths):  # the new state's leaves come first, in the same order
        if path.startswith(".params['image']['inception']"):
            assert jaxpr.outvars[i] is jaxpr.invars[i], path
            n_trunk += 1
        elif path.startswith(".params['image']['emb_cnn_code']"):
            assert jaxpr.outvars[i] is not jaxpr.invars[i], path
    assert n_trunk > 100  # 94 convolutions and their BatchNorm scales and biases
