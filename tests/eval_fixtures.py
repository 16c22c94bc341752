"""Helpers for the evaluation/release tests: tiny model directories and torch-keyed state dicts.

``flax_to_torch`` inverts the converters' key mapping (generator, RNN/CNN encoders, torchvision
Inception), so state dicts in the original's layout can be made from any Flax variables.
"""

import os
import re

import jax
import jax.numpy as jnp
import numpy as np

from attngan_jax import model_dir
from attngan_jax.config_lib import base_config
from attngan_jax.models import factory
from attngan_jax.models.factory import ModelSpec

TINY = dict(
    embed_dim=16, emb_dim=16, image_trunk="small", small_trunk_width=8, gf_dim=4, df_dim=4,
    z_dim=8, condition_dim=8, r_num=1, num_stages=2, base_size=64,
)  # fmt: skip

_GEN_RULES = [  # Flax module path -> torch module path (generator specifics)
    (r"^h_net1/fc_bn$", "h_net1.fc.1"),
    (r"^h_net1/fc$", "h_net1.fc.0"),
    (r"upsample(\d*)/conv$", r"upsample\1.1"),
    (r"upsample(\d*)/bn$", r"upsample\1.2"),
    (r"residual_(\d+)/conv1$", r"residual.\1.block.0"),
    (r"residual_(\d+)/bn1$", r"residual.\1.block.1"),
    (r"residual_(\d+)/conv2$", r"residual.\1.block.3"),
    (r"residual_(\d+)/bn2$", r"residual.\1.block.4"),
    (r"^(img_net\d*)/img$", r"\1.img.0"),
]
_LEAF = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean",
         "var": "running_var"}  # fmt: skip


def flax_to_torch(variables, kind: str) -> dict[str, np.ndarray]:
    """Flax variables -> torch state dict (``kind``: generator | text | inception)."""
    out = {}
    flat = {}
    for col in ("params", "batch_stats"):
        for path, v in jax.tree_util.tree_flatten_with_path(variables.get(col, {}))[0]:
            flat[tuple(p.key for p in path)] = np.asarray(v, np.float32)
    if kind == "text":
        out["encoder.weight"] = flat[("encoder", "embedding")]
        for name, torch in (("w_ih", "weight_ih"), ("w_hh", "weight_hh"), ("b_ih", "bias_ih"),
                            ("b_hh", "bias_hh")):  # fmt: skip
            a = flat[("rnn", name)]
            for d, sfx in enumerate(("", "_reverse")):
                out[f"rnn.{torch}_l0{sfx}"] = a[d].T if a[d].ndim == 2 else a[d]
        return out
    for path, a in flat.items():
        mod = "/".join(path[:-1])
        if kind == "generator":
            for pat, rep in _GEN_RULES:
                mod = re.sub(pat, rep, mod)
        elif mod.startswith("inception/"):
            mod = mod[len("inception/") :]
        key = mod.replace("/", ".") + "." + _LEAF[path[-1]]
        if path[-1] == "kernel":
            a = (
                a.transpose(3, 2, 0, 1) if a.ndim == 4 else a.T
            )  # HWIO -> OIHW, (in,out) -> (out,in)
        out[key] = a
    return out


def random_variables(expected, seed: int = 0):
    """Random numpy variables of the shapes of ``expected`` (He-scaled kernels, positive var)."""
    rng = np.random.default_rng(seed)

    def leaf(path, x):
        name = path[-1].key
        shape = x.shape
        if name == "kernel":
            fan_in = int(np.prod(shape[:-1]))
            return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        if name in ("scale", "var"):
            return rng.uniform(0.5, 1.5, shape).astype(np.float32)
        return (0.05 * rng.standard_normal(shape)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(leaf, expected)


def tiny_model_json(vocab_size: int, dataset: str = "shapes", words_num: int = 18) -> dict:
    m = base_config().model.to_dict()
    m.update(TINY, vocab_size=vocab_size)
    m["clip"] = None  # the config's CLIP directory is not model.json's CLIP spec (rnn encoder)
    sizes = [m["base_size"] * 2**i for i in range(m["num_stages"])]
    m.update(words_num=words_num, image_sizes=sizes, dataset=dataset, damsm_dropout=0.0,
             dtype="float32")  # fmt: skip
    return m


def init_tiny_networks(mj: dict, seed: int = 0):
    """(generator variables, encoders) with random weights (no ``init``: it is slow on CPU)."""
    spec = ModelSpec.from_json(mj)
    gen = factory.generator(spec)
    text, image = factory.text_encoder(spec), factory.image_encoder(spec)
    k = jax.random.key(seed)
    b, t = 2, mj["words_num"]
    g = jax.eval_shape(lambda: gen.init(k, jnp.zeros((b, gen.z_dim)), jnp.zeros((b, gen.emb_dim)),
                 jnp.zeros((b, t, gen.emb_dim)), jnp.zeros((b, t), bool), train=False,
                 eps=jnp.zeros((b, gen.condition_dim))))  # fmt: skip
    tv = jax.eval_shape(lambda: text.init(k, jnp.ones((b, t), jnp.int32), jnp.full((b,), t)))
    s = mj["image_sizes"][-1]
    iv = jax.eval_shape(lambda: image.init(k, jnp.zeros((1, s, s, 3))))
    enc = {"text": {"params": random_variables(tv["params"], seed + 1)},
           "image": random_variables(dict(iv), seed + 2)}  # fmt: skip
    return random_variables(dict(g), seed), enc


def make_model_dir(path: str, vocab, dataset: str = "shapes", seed: int = 0) -> str:
    """Writes a tiny model directory (EMA + raw generator, encoders, vocab, model.json)."""
    mj = tiny_model_json(len(vocab), dataset)
    g, enc = init_tiny_networks(mj, seed)
    model_dir.save_generator(path, g)
    model_dir.save_generator(path, g, raw=True)
    model_dir.save_damsm(path, enc)
    vocab.save(os.path.join(path, "vocab.json"))
    model_dir.save_model_config(path, mj)
    return path


def random_inception_npz(path: str, num_classes: int = 1000, fid_variant: bool = False) -> str:
    """A random torchvision-keyed Inception-v3 (+fc) state dict saved as float16 ``.npz``."""
    from attngan_jax.metrics.networks import EvalInceptionNet

    module = EvalInceptionNet(num_classes=num_classes, fid_variant=fid_variant)
    expected = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 299, 299, 3)))
    sd = flax_to_torch(random_variables(dict(expected)), "inception")
    np.savez(path, **{k: v.astype(np.float16) for k, v in sd.items()})
    return path
