"""Every config file loads, in full and tiny variants, with the original's values."""

import glob
import importlib.util
import os
import re

import pytest
from paths import REPO

CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "*.py")))


def load(path, arg=None):
    spec = importlib.util.spec_from_file_location("cfg", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert "python train.py" in mod.__doc__  # the docstring holds the exact command
    return mod.get_config(arg)


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_config_loads(path):
    full, tiny = load(path), load(path, "tiny")
    assert full.phase in ("damsm", "attngan", "demo")
    assert tiny.damsm.num_steps > 0 and tiny.gan.num_steps > 0
    assert tiny.model.gf_dim < full.model.gf_dim


def test_original_values():
    root = os.path.join(REPO, "configs")
    birds = load(os.path.join(root, "attngan_birds.py"))
    coco = load(os.path.join(root, "attngan_coco.py"))
    assert (birds.model.gf_dim, birds.model.df_dim, birds.model.r_num, birds.gan.lam) == (
        32,
        64,
        2,
        5.0,
    )
    assert (birds.gan.batch_size, birds.gan.num_epochs, birds.data.words_num) == (20, 600, 18)
    assert (coco.model.gf_dim, coco.model.df_dim, coco.model.r_num, coco.gan.lam) == (
        48,
        96,
        3,
        50.0,
    )
    assert (coco.gan.batch_size, coco.gan.num_epochs, coco.data.words_num) == (14, 120, 12)
    damsm = load(os.path.join(root, "damsm_birds.py"))
    assert (damsm.damsm.batch_size, damsm.damsm.lr, damsm.data.image_sizes) == (48, 0.002, (299,))


# The values that make each experiment are written in its own file, not inherited unseen.
STATED = {
    "attngan_birds.py": ("model.gf_dim", "model.df_dim", "model.r_num", "model.base_size",
                         "model.num_stages", "gan.batch_size", "gan.num_epochs", "gan.g_lr",
                         "gan.d_lr", "gan.lam", "data.words_num", "data.captions_per_image"),
    "attngan_coco.py": ("model.gf_dim", "model.df_dim", "model.r_num", "gan.batch_size",
                        "gan.num_epochs", "gan.lam", "data.words_num", "data.captions_per_image"),
    "damsm_birds.py": ("damsm.batch_size", "damsm.num_epochs", "damsm.lr", "damsm.rnn_grad_clip",
                       "model.emb_dim", "data.image_sizes", "data.words_num"),
    "damsm_coco.py": ("damsm.batch_size", "damsm.num_epochs", "damsm.lr", "model.emb_dim",
                      "data.image_sizes", "data.words_num", "data.captions_per_image"),
    "shapes.py": ("model.gf_dim", "model.df_dim", "model.base_size", "model.num_stages",
                  "damsm.num_epochs", "damsm.mirror_negatives", "gan.lam", "gan.g_lr",
                  "gan.batch_size", "gan.num_epochs", "gan.ema_decay"),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(STATED))
def test_experiment_file_states_its_values(name):
    with open(os.path.join(REPO, "attngan_jax", "configs", name)) as f:
        source = f.read()
    for key in STATED[name]:
        section, field = key.split(".")
        assert re.search(rf"c\.{section}\.{field}\b.*=|c\.{section}\.{field} =", source), (
            f"{name} does not set {key}"
        )


def test_image_sizes_are_derived_from_the_stages():
    from attngan_jax import config_lib
    from attngan_jax.configs import attngan_birds, damsm_birds
    from attngan_jax.configs import shapes as shapes_config

    demo = shapes_config.build("demo")
    assert demo.data.image_sizes == () and config_lib.image_sizes(demo) == (16, 32)
    demo.model.base_size = 32  # one override moves the whole pyramid
    assert config_lib.image_sizes(demo) == (32, 64)
    config_lib.validate(demo)
    assert config_lib.image_sizes(shapes_config.build("damsm")) == (16, 32)  # small trunk
    assert config_lib.image_sizes(attngan_birds.get_config()) == (64, 128, 256)
    assert config_lib.image_sizes(damsm_birds.get_config()) == (299,)
    birds = attngan_birds.get_config()
    birds.model.num_stages = 2
    assert config_lib.image_sizes(birds) == (64, 128)
    recorded = config_lib.finalize(shapes_config.build("demo"))
    assert recorded.data.image_sizes == (16, 32)


def test_image_sizes_override_from_the_command_line(monkeypatch):
    from absl import flags
    from ml_collections import config_flags

    from attngan_jax import config_lib

    for argv, sizes in (
        (["--config.model.base_size=32"], (32, 64)),
        (["--config.model.base_size=32", "--config.data.image_sizes=(32,64)"], (32, 64)),
        (["--config.model.num_stages=3"], (16, 32, 64)),
    ):
        argv = ["prog", f"--config={os.path.join(REPO, 'configs', 'shapes.py')}", *argv]
        monkeypatch.setattr("sys.argv", argv)  # config_flags reads the overrides at definition
        fv = flags.FlagValues()
        config_flags.DEFINE_config_file("config", None, flag_values=fv)
        fv(argv)
        assert config_lib.image_sizes(fv.config) == sizes, argv[2:]
