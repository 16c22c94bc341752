"""Every config file loads, in full and tiny variants, with the original's values."""

import glob
import importlib.util
import os

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
