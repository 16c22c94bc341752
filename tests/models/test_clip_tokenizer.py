"""The CLIP tokenizer: open_clip's ids for tricky captions, with and without torch."""

import json
import os
import subprocess
import sys

import numpy as np
from open_clip_ref import open_clip
from paths import REPO

from attngan_jax.models.clip_tokenizer import ClipTokenizer, tokenize

CAPTIONS = [
    "a photo of a cat",
    "A bird with a RED crown, a short beak... and white wings!",
    "  extra   whitespace\tand\nnewlines  ",
    "",
    "Café naïve résumé — über straße",
    "emoji 🐦🔥 and CJK 鳥 and Ελληνικά",
    "fish &amp; chips &lt;b&gt; &quot;quoted&quot; &amp;amp;",
    "it's a bird's nest, they're here, we'll see, I'd've, don't",
    "numbers 123 4.56 1,000,000 and 2nd 3rd",
    "mojibake: cafÃ© and âœ” fixed by ftfy",
    "a <end_of_text> inside and <START_OF_TEXT>",
    "punctuation!!! ??? ... --- ((())) [x] {y} @#$%^&*",
    "\u00a0non\u2009breaking\u3000spaces\x1cand control",
    " ".join(["a very long caption about a small bird"] * 20),
    "word " * 75,
    "word " * 74,
]


def test_tokenizer_matches_open_clip():
    oc = open_clip()
    want = oc.tokenizer.tokenize(CAPTIONS).numpy()
    got = tokenize(CAPTIONS)
    assert got.dtype == np.int32 and got.shape == (len(CAPTIONS), 77)
    for caption, g, w in zip(CAPTIONS, got, want, strict=True):
        np.testing.assert_array_equal(g, w, err_msg=repr(caption))
    assert got[-3, -1] == got[-2, -1] == 49407  # truncated: <end_of_text> is kept last
    for ctx in (5, 20):
        np.testing.assert_array_equal(
            tokenize(CAPTIONS, ctx), oc.tokenizer.tokenize(CAPTIONS, ctx).numpy()
        )
    tok = ClipTokenizer()
    assert tok.vocab_size == 49408
    assert tok.decode(tok.encode("a photo of a cat")) == "a photo of a cat "


def test_tokenizer_needs_neither_torch_nor_open_clip():
    """In a process where importing torch or open_clip fails, the tokenizer gives the same ids."""
    code = """
import json, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "open_clip", "torchvision"):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
from attngan_jax.models.clip_tokenizer import tokenize
ids = tokenize(json.loads(sys.argv[1])).tolist()
assert not any(m.split(".")[0] in ("torch", "open_clip") for m in sys.modules)
print(json.dumps(ids))
"""
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(CAPTIONS)],
        capture_output=True, text=True, env=env, check=True, timeout=60,
    )  # fmt: skip
    np.testing.assert_array_equal(np.array(json.loads(out.stdout)), tokenize(CAPTIONS))
