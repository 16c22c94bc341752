"""convert.release: original-layout files (random weights) -> model directory -> eval.py sample."""

import json
import os
import pickle
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from eval_fixtures import flax_to_torch, init_tiny_networks, random_variables, tiny_model_json  # noqa: E402
from paths import KEYS_TSV, REPO, require_shared

from attngan_jax import model_dir  # noqa: E402
from attngan_jax.convert.common import ConversionError  # noqa: E402
from attngan_jax.convert.release import convert_release, generator_config_from_state_dict  # noqa: E402
from attngan_jax.models.image_encoder import CNNEncoder  # noqa: E402

WORDS = ["<end>", "this", "bird", "is", "red", "with", "a", "short", "beak"]


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """Original-layout files: tiny G (gf 4, 2 stages), text encoder, Inception image encoder."""
    d = tmp_path_factory.mktemp("release")
    mj = tiny_model_json(len(WORDS), dataset="birds")
    g, enc = init_tiny_networks(mj, seed=1)
    np.savez(d / "netG.npz", **flax_to_torch(g, "generator"))
    np.savez(d / "text_encoder200.npz", **flax_to_torch(enc["text"], "text"))
    img = CNNEncoder(nef=mj["emb_dim"], trunk="inception")
    shapes = jax.eval_shape(img.init, jax.random.key(0), jnp.zeros((1, 299, 299, 3)))
    img_vars = random_variables(dict(shapes), seed=2)
    sd = flax_to_torch(img_vars, "inception")
    np.savez(d / "image_encoder200.npz", **{k: v.astype(np.float16) for k, v in sd.items()})
    ixtoword = dict(enumerate(WORDS))
    with open(d / "captions.pickle", "wb") as f:
        pickle.dump(
            [[[1, 2]], [[2, 3]], ixtoword, {w: i for i, w in ixtoword.items()}], f, protocol=2
        )
    return d, mj, g, enc


def _leaves_equal(a, b):
    la, lb = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)
    assert [p for p, _ in la] == [p for p, _ in lb]
    for (p, x), (_, y) in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=str(p))


def test_release_round_trip_and_sample(release, tmp_path):
    d, mj, g, enc = release
    out = str(tmp_path / "model")
    got = convert_release(str(d / "netG.npz"), str(d / "text_encoder200.npz"),
                          str(d / "captions.pickle"), out)  # fmt: skip
    for k in ("gf_dim", "emb_dim", "z_dim", "condition_dim", "r_num", "num_stages", "base_size"):
        assert got[k] == mj[k], k
    assert got["dcgan"] is False and got["vocab_size"] == len(WORDS) and got["words_num"] == 25
    assert got["image_sizes"] == [64, 128] and got["image_trunk"] == "inception"
    assert json.load(open(os.path.join(out, "model.json"))) == got
    _leaves_equal(model_dir.load_generator(out), g)  # the converted weights are the originals
    _leaves_equal(model_dir.load_damsm(out)["text"], enc["text"])
    caps = tmp_path / "caps.txt"
    caps.write_text("this bird is red with a short beak\n")
    r = subprocess.run(
        [sys.executable, os.path.join(REPO, "eval.py"), "--mode=sample", f"--workdir={out}",
         f"--captions={caps}", f"--outdir={tmp_path / 'png'}", "--num_samples=2"],
        capture_output=True, text=True, cwd=str(tmp_path), timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(os.listdir(tmp_path / "png")) == sorted(
        f"0000_{j:02d}_{s}.png" for j in range(2) for s in ("64", "128", "attention")
    )


def test_release_errors(release, tmp_path):
    d, *_ = release
    args = (str(d / "netG.npz"), str(d / "text_encoder200.npz"))
    bad = tmp_path / "captions.pickle"
    words = WORDS + ["extra"]
    with open(bad, "wb") as f:
        pickle.dump([[], [], words, {w: i for i, w in enumerate(words)}], f)
    with pytest.raises(ConversionError, match=r"10 words .* trained with 9"):
        convert_release(*args, str(bad), str(tmp_path / "m"))
    with pytest.raises(ConversionError, match="gf_dim=8 but .* gf_dim=4"):
        convert_release(*args, str(d / "captions.pickle"), str(tmp_path / "m"),
                        overrides={"gf_dim": 8})  # fmt: skip
    assert not os.path.exists(tmp_path / "m" / "model.json")


def test_generator_config_from_release_shapes():
    """The birds/COCO/DCGAN widths from the reference key table's shapes."""
    rows = {}
    with open(require_shared(KEYS_TSV, "the original's state-dict key table")) as f:
        section = None
        for line in f:
            if line.startswith("## "):
                section = line[3:].split(":")[0]
            elif section and not line.startswith("#") and "\t" in line:
                key, shape = line.rstrip("\n").split("\t")
                rows.setdefault(section, {})[key] = tuple(
                    int(x) for x in shape.strip("()").split(",") if x.strip()
                )
    sds = {
        s: {k: np.empty(v, np.int8) for k, v in r.items()} for s, r in rows.items() if "netG" in s
    }
    assert sds, "no netG section in the key table"
    for name, sd in sds.items():
        cfg = generator_config_from_state_dict(sd)
        assert cfg["base_size"] == 64 and cfg["num_stages"] == 3 and cfg["z_dim"] == 100, name
        want = {"birds netG": (32, 2, False), "coco netG": (48, 3, False),
                "birds AttnDCGAN netG": (32, 0, True)}[name]  # fmt: skip
        assert (cfg["gf_dim"], cfg["r_num"], cfg["dcgan"]) == want
