"""ModelSpec <-> model.json: round trip, and files written before a key was renamed still load."""

import json
import os

from attngan_jax import model_dir
from attngan_jax.config_lib import base_config
from attngan_jax.models.factory import ModelSpec


def test_json_round_trip_and_config_keys():
    spec = ModelSpec.from_config(base_config(), vocab_size=50)
    assert (spec.word_embed_dim, spec.emb_dim) == (300, 256)  # model.embed_dim, model.emb_dim
    d = spec.to_json()
    assert d["word_embed_dim"] == 300 and "embed_dim" not in d
    assert ModelSpec.from_json(json.loads(json.dumps(d))) == spec


def test_model_json_with_the_old_key_loads():
    d = ModelSpec.from_config(base_config(), vocab_size=50).to_json()
    d["embed_dim"] = d.pop("word_embed_dim") - 1  # as written before the rename
    assert ModelSpec.from_json(d).word_embed_dim == 299
    d["word_embed_dim"] = 7  # both: the new name wins
    assert ModelSpec.from_json(d).word_embed_dim == 7


def test_shipped_model_json_loads():
    with open(os.path.join(model_dir.SHIPPED_MODEL, model_dir.MODEL_JSON)) as f:
        d = json.load(f)
    spec = ModelSpec.from_json(d)
    assert spec.word_embed_dim == d.get("word_embed_dim", d.get("embed_dim"))
    assert spec.emb_dim == d["emb_dim"]
