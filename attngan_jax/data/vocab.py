"""The word vocabulary: index 0 is ``'<end>'`` (padding/end token), words are numbered from 1.

Compatibility with the released text encoders requires the released ``captions.pickle``
vocabulary (:meth:`Vocabulary.from_captions_pickle`): the original numbered its words in
Python-2 dict iteration (hash) order, which cannot be reproduced (reference §12.2, quirk §16.12).
Vocabularies built here (:meth:`Vocabulary.from_captions`) are deterministic instead: words sorted
by descending count, ties alphabetically; like the original, every word is kept (its threshold
was ``count >= 0``).
Our own vocabularies are stored as JSON, written atomically.
"""

from __future__ import annotations

import collections
import json
import os
from collections.abc import Iterable, Sequence

from attngan_jax.data.safe_pickle import load_pickle
from attngan_jax.data.text import DataError
from attngan_jax.runtime import atomic

END_TOKEN = "<end>"
_FORMAT = "attngan_jax.vocabulary"


class UnknownWordsError(DataError):
    """Words absent from the vocabulary; ``words`` lists them (sorted, unique)."""

    def __init__(self, message: str, words: list[str]):
        super().__init__(message)
        self.words = words


class Vocabulary:
    """Bidirectional word <-> id mapping.

    Attributes:
        ixtoword: id -> word; ``ixtoword[0] == '<end>'``.
        wordtoix: word -> id.
    """

    def __init__(self, ixtoword: Sequence[str]):
        """Creates the vocabulary from its id -> word list.

        Args:
            ixtoword: words by id; entry 0 must be ``'<end>'``, entries must be unique strings.
        """
        ixtoword = list(ixtoword)
        if not ixtoword or ixtoword[0] != END_TOKEN:
            first = ixtoword[0] if ixtoword else None
            raise DataError(f"vocabulary: id 0 must be {END_TOKEN!r}, got {first!r}")
        wordtoix: dict[str, int] = {}
        for i, w in enumerate(ixtoword):
            if not isinstance(w, str):
                raise DataError(f"vocabulary: id {i} is not a string: {w!r}")
            if w in wordtoix:
                raise DataError(f"vocabulary: word {w!r} appears twice (ids {wordtoix[w]}, {i})")
            wordtoix[w] = i
        self.ixtoword = ixtoword
        self.wordtoix = wordtoix

    def __len__(self) -> int:
        return len(self.ixtoword)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.ixtoword == other.ixtoword

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} words)"

    def missing(self, tokens: Iterable[str]) -> list[str]:
        """The distinct tokens not in the vocabulary, sorted."""
        return sorted({t for t in tokens if t not in self.wordtoix})

    def encode(self, tokens: Sequence[str], unknown: str = "drop") -> list[int]:
        """Maps tokens to ids.

        Args:
            tokens: the caption's tokens (see :func:`attngan_jax.data.text.tokenize`).
            unknown: ``'drop'`` skips unknown words (as the original ``gen_example`` did);
                ``'error'`` raises :class:`UnknownWordsError` naming them.

        Returns:
            The word ids (no end token).
        """
        if unknown not in ("drop", "error"):
            raise ValueError(f"unknown must be 'drop' or 'error', got {unknown!r}")
        if unknown == "error":
            missing = self.missing(tokens)
            if missing:
                raise UnknownWordsError(f"words not in the vocabulary: {missing}", missing)
        return [self.wordtoix[t] for t in tokens if t in self.wordtoix]

    def decode(self, ids: Iterable[int]) -> str:
        """Maps ids back to a space-separated string, stopping at the first 0 (end/padding).

        Stopping at 0 is what the original's visualisation (``build_super_images``) did.
        """
        words = []
        for i in ids:
            i = int(i)
            if i == 0:
                break
            if not 0 < i < len(self.ixtoword):
                raise ValueError(f"word id {i} outside the vocabulary (size {len(self)})")
            words.append(self.ixtoword[i])
        return " ".join(words)

    # ---------------------------------------------------------------- construction / storage

    @classmethod
    def from_captions(cls, captions: Iterable[Sequence[str]]) -> Vocabulary:
        """Builds a deterministic vocabulary holding every word of ``captions``.

        Words are numbered from 1 by descending count, ties alphabetically. (The original numbered
        them in Python-2 hash order, which no later run can reproduce.)

        Args:
            captions: token lists (train and test captions together, as the original).
        """
        counts = collections.Counter(w for cap in captions for w in cap)
        counts.pop(END_TOKEN, None)
        words = sorted(counts, key=lambda w: (-counts[w], w))
        return cls([END_TOKEN, *words])

    @classmethod
    def from_captions_pickle(cls, path: str | os.PathLike) -> Vocabulary:
        """The vocabulary of an original ``captions.pickle`` (see :func:`load_captions_pickle`)."""
        return load_captions_pickle(path)[2]

    def save(self, path: str | os.PathLike) -> None:
        """Writes the vocabulary as JSON atomically (``runtime.atomic``).

        An interrupted write leaves no file at ``path`` (or the previous one intact).
        """
        atomic.write_json(path, {"format": _FORMAT, "version": 1, "ixtoword": self.ixtoword})

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocabulary:
        """Reads a vocabulary written by :meth:`save`."""
        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            raise DataError(f"{path}: vocabulary file not found") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(
                f"{path}: not a vocabulary JSON file ({e}); delete it to rebuild"
            ) from None
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise DataError(f"{path}: not a vocabulary file written by attngan_jax")
        try:
            return cls(data["ixtoword"])
        except DataError as e:
            raise DataError(f"{path}: {e}") from None

    @classmethod
    def load_or_build(
        cls,
        path: str | os.PathLike,
        captions: Sequence[Sequence[str]],
        rebuild: bool = False,
    ) -> Vocabulary:
        """Re-uses the vocabulary at ``path`` if it covers ``captions``, else builds and saves one.

        Args:
            path: the vocabulary JSON file.
            captions: all token lists the vocabulary must cover.
            rebuild: build a new vocabulary and overwrite ``path`` even if one exists (word ids
                change: text encoders trained with the old file no longer match).

        Raises:
            UnknownWordsError: the existing file lacks words of ``captions`` and ``rebuild`` is
                False.
        """
        path = os.fspath(path)
        if os.path.exists(path) and not rebuild:
            vocab = cls.load(path)
            missing = vocab.missing(w for cap in captions for w in cap)
            if missing:
                shown = ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else "")
                raise UnknownWordsError(
                    f"{path}: the saved vocabulary lacks {len(missing)} word(s) of the captions "
                    f"({shown}); the captions changed since it was built. Rebuild it "
                    "(rebuild_vocab=True, or delete the file) - note this changes word ids, so "
                    "text encoders trained with the old vocabulary no longer match",
                    missing,
                )
            return vocab
        vocab = cls.from_captions(captions)
        vocab.save(path)
        return vocab


def load_captions_pickle(
    path: str | os.PathLike,
) -> tuple[list[list[int]], list[list[int]], Vocabulary]:
    """Reads an original ``captions.pickle`` = ``[train_caps, test_caps, ixtoword, wordtoix]``.

    ``ixtoword`` may be a list or a dict ``{id: word}`` (the original wrote a dict); ``wordtoix``
    must agree with it.

    Args:
        path: the pickle file.

    Returns:
        ``(train_captions, test_captions, vocabulary)``; captions are lists of word ids.
    """
    path = os.fspath(path)
    data = load_pickle(path)
    if not isinstance(data, (list, tuple)) or len(data) != 4:
        raise DataError(
            f"{path}: expected [train_captions, test_captions, ixtoword, wordtoix], got "
            f"{_describe(data)}; use the captions.pickle of the original release's metadata"
        )
    train, test, ixtoword, wordtoix = data
    if isinstance(ixtoword, dict):
        n = len(ixtoword)
        try:
            ids = sorted(int(k) for k in ixtoword)
        except (TypeError, ValueError):
            raise DataError(f"{path}: ixtoword keys are not integer ids") from None
        if ids != list(range(n)):
            raise DataError(f"{path}: ixtoword keys are not the ids 0..{n - 1}")
        ixtoword = [ixtoword[k] for k in sorted(ixtoword, key=int)]
    if not isinstance(ixtoword, (list, tuple)):
        raise DataError(f"{path}: ixtoword is {_describe(ixtoword)}, expected a list or dict")
    try:
        vocab = Vocabulary(ixtoword)
    except DataError as e:
        raise DataError(f"{path}: {e}") from None
    if not isinstance(wordtoix, dict):
        raise DataError(f"{path}: wordtoix is {_describe(wordtoix)}, expected a dict")
    bad = [w for w, i in wordtoix.items() if vocab.wordtoix.get(w) != i]
    if bad or len(wordtoix) != len(vocab):
        raise DataError(f"{path}: wordtoix disagrees with ixtoword (e.g. {bad[:5]})")
    return _id_lists(path, "train", train), _id_lists(path, "test", test), vocab


def _describe(obj) -> str:
    """``'a dict of 3 entries'`` / ``'a str'``: what a pickle held, for messages."""
    n = f" of {len(obj)} entries" if hasattr(obj, "__len__") and not isinstance(obj, str) else ""
    return f"a {type(obj).__name__}{n}"


def _id_lists(path: str, split: str, caps) -> list[list[int]]:
    """``caps`` as lists of int word ids, or a DataError naming the first bad caption."""
    if not isinstance(caps, (list, tuple)):
        raise DataError(f"{path}: the {split} captions are {_describe(caps)}, expected a list")
    out = []
    for i, cap in enumerate(caps):
        try:
            out.append([int(w) for w in cap])
        except (TypeError, ValueError):
            raise DataError(
                f"{path}: {split} caption {i} is not a list of word ids: {cap!r:.80}"
            ) from None
    return out
