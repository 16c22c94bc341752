r"""CLIP's byte-level BPE tokenizer, giving the ids of open_clip's ``tokenize`` without torch.

A port of open_clip's ``SimpleTokenizer`` (itself OpenAI CLIP's, MIT licence) with its default
``clean="lower"``:

1. clean: ``ftfy.fix_text``, ``html.unescape`` twice, strip; whitespace runs -> one space
   (``" ".join(text.split())``), lower case;
2. split with the regex ``<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|
   [^\s\p{L}\p{N}]+`` (case-insensitive; one digit per token);
3. map each piece's UTF-8 bytes to printable characters (:func:`bytes_to_unicode`) and apply the
   48,894 merges of ``bpe_simple_vocab_16e6.txt.gz`` by rank, the last symbol carrying ``</w>``;
4. ``[<start_of_text>] + ids + [<end_of_text>]``, zero-padded to ``context_length`` (77); a longer
   caption is cut to ``context_length`` ids whose last is replaced by ``<end_of_text>``.

The vocabulary (49,408 ids: 256 bytes, 256 bytes with ``</w>``, the merges, the two special
tokens) ships in ``attngan_jax/assets/clip``. ``tests/models/test_clip.py`` compares the ids with
open_clip's for tricky captions.
"""

from __future__ import annotations

import functools
import gzip
import html
import os
from collections.abc import Sequence

import ftfy
import numpy as np
import regex

DEFAULT_BPE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "assets",
    "clip",
    "bpe_simple_vocab_16e6.txt.gz",
)
CONTEXT_LENGTH = 77
SOT, EOT = "<start_of_text>", "<end_of_text>"
_NUM_MERGES = 49152 - 256 - 2  # open_clip reads lines 1 .. 48894 of the file


@functools.lru_cache
def bytes_to_unicode() -> dict[int, str]:
    """A printable character for every byte (printable Latin-1 bytes map to themselves)."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def clean(text: str) -> str:
    """open_clip's ``_clean_lower``: ftfy, HTML entities (twice), whitespace runs, lower case."""
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return " ".join(text.split()).strip().lower()


def _pairs(word: tuple[str, ...]) -> set[tuple[str, str]]:
    return set(zip(word[:-1], word[1:], strict=True))


class ClipTokenizer:
    """Text -> CLIP token ids (see the module docstring).

    Args:
        bpe_path: the gzipped merges file (default: the shipped one).
    """

    def __init__(self, bpe_path: str = DEFAULT_BPE):
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        with gzip.open(bpe_path) as f:
            lines = f.read().decode("utf-8").split("\n")
        merges = [tuple(m.split()) for m in lines[1 : _NUM_MERGES + 1]]
        vocab = list(self.byte_encoder.values())
        vocab += [v + "</w>" for v in vocab] + ["".join(m) for m in merges] + [SOT, EOT]
        self.encoder = {t: i for i, t in enumerate(vocab)}
        self.decoder = dict(enumerate(vocab))
        self.bpe_ranks = {m: i for i, m in enumerate(merges)}
        self.cache = {SOT: SOT, EOT: EOT}
        self.pat = regex.compile(
            rf"{SOT}|{EOT}|'s|'t|'re|'ve|'m|'ll|'d|[\p{{L}}]+|[\p{{N}}]|[^\s\p{{L}}\p{{N}}]+",
            regex.IGNORECASE,
        )
        self.sot_id, self.eot_id = self.encoder[SOT], self.encoder[EOT]
        self.vocab_size = len(self.encoder)

    def bpe(self, token: str) -> str:
        """The BPE symbols of one pre-token, joined by spaces (the last ends in ``</w>``)."""
        if token in self.cache:
            return self.cache[token]
        word = (*token[:-1], token[-1] + "</w>")
        pairs = _pairs(word)
        if not pairs:
            return token + "</w>"
        while True:
            bigram = min(pairs, key=lambda p: self.bpe_ranks.get(p, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            new: list[str] = []
            i = 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                except ValueError:
                    new.extend(word[i:])
                    break
                new.extend(word[i:j])
                i = j
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    new.append(first + second)
                    i += 2
                else:
                    new.append(word[i])
                    i += 1
            word = tuple(new)
            if len(word) == 1:
                break
            pairs = _pairs(word)
        out = " ".join(word)
        self.cache[token] = out
        return out

    def encode(self, text: str) -> list[int]:
        """The ids of ``text`` without the start/end tokens and without truncation."""
        ids = []
        for piece in regex.findall(self.pat, clean(text)):
            piece = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[s] for s in self.bpe(piece).split(" "))
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` (``</w>`` -> space; undecodable bytes -> U+FFFD)."""
        text = "".join(self.decoder[int(i)] for i in ids)
        data = bytearray(self.byte_decoder[c] for c in text)
        return data.decode("utf-8", errors="replace").replace("</w>", " ")

    def __call__(self, texts: str | Sequence[str], context_length: int = CONTEXT_LENGTH):
        """Token ids as open_clip's ``tokenize``.

        Args:
            texts: one caption or a sequence of them.
            context_length: ids per caption (77 for every released CLIP).

        Returns:
            (N, context_length) int32: ``<start_of_text>``, the ids, ``<end_of_text>``, zeros;
            captions longer than ``context_length`` are truncated with ``<end_of_text>`` last.
        """
        if isinstance(texts, str):
            texts = [texts]
        out = np.zeros((len(texts), context_length), np.int32)
        for i, text in enumerate(texts):
            ids = [self.sot_id, *self.encode(text), self.eot_id]
            if len(ids) > context_length:
                ids = ids[:context_length]
                ids[-1] = self.eot_id
            out[i, : len(ids)] = ids
        return out


@functools.lru_cache(maxsize=1)
def default_tokenizer() -> ClipTokenizer:
    """The tokenizer of the shipped vocabulary (built once per process)."""
    return ClipTokenizer()


def tokenize(texts: str | Sequence[str], context_length: int = CONTEXT_LENGTH) -> np.ndarray:
    """``open_clip.tokenize`` without torch: (N, context_length) int32 ids (see the module doc)."""
    return default_tokenizer()(texts, context_length)
