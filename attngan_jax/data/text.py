"""Caption text: the original tokeniser, caption files and the per-example caption sampling.

Everything here reproduces ``code/datasets.py`` of the original release (reference §12.2-12.3) and
adds the checks the original lacks: a caption file with fewer captions than ``captions_per_image``
silently misaligned every later caption there (quirk §16.15); here it is an error naming the file.
"""

from __future__ import annotations

import logging
import os
import re

import numpy as np

from attngan_jax.errors import InputError

logger = logging.getLogger(__name__)

# nltk's RegexpTokenizer(r'\w+') = re.findall with re.UNICODE | re.MULTILINE | re.DOTALL; Python 3's
# str patterns are Unicode-aware by default, so \w matches the same "word characters".
_WORD_RE = re.compile(r"\w+", re.UNICODE | re.MULTILINE | re.DOTALL)


class DataError(InputError):
    """A dataset file is missing, malformed or inconsistent; the message names the file."""


def tokenize(caption: str) -> list[str]:
    r"""Tokenises one caption exactly as the original loader (reference §12.2).

    Steps: replace the two-character sequence U+FFFD U+FFFD by a space, lower-case, take the runs of
    word characters (``\w+``; punctuation is dropped), strip non-ASCII characters from each token
    (``encode('ascii', 'ignore')``) and drop tokens that become empty.

    Args:
        caption: one caption line.

    Returns:
        The tokens, possibly empty.
    """
    caption = caption.replace("\ufffd\ufffd", " ")
    tokens = _WORD_RE.findall(caption.lower())
    out = []
    for t in tokens:
        t = t.encode("ascii", "ignore").decode("ascii")
        if t:
            out.append(t)
    return out


def read_caption_file(
    path: str | os.PathLike,
    expected: int | None,
    allow_fewer: bool = False,
    skip_untokenizable: bool = False,
) -> list[list[str]]:
    r"""Reads and tokenises a caption file (one caption per line, UTF-8).

    Empty (or whitespace-only) lines are skipped, as in the original; a UTF-8 byte-order mark and
    Windows (CRLF) line ends are accepted. A non-empty line without
    any ASCII word token is an error naming the file and line (the original silently skipped lines
    without ``\w`` tokens, and kept an *empty* caption when all tokens were non-ASCII, which the
    text encoder cannot use); with ``skip_untokenizable=True`` such lines are skipped with a
    warning that counts them.

    Args:
        path: the caption file.
        expected: number of captions to keep (the first ``expected``); ``None`` keeps all.
        allow_fewer: accept a file with fewer than ``expected`` captions (a warning is logged).
        skip_untokenizable: skip lines that yield no tokens instead of raising.

    Returns:
        The captions as token lists, in file order.

    Raises:
        DataError: the file is missing or not UTF-8, a line yields no tokens, the file holds no
            caption, or it holds fewer than ``expected`` captions and ``allow_fewer`` is False.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
    except FileNotFoundError:
        raise DataError(f"{path}: caption file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: a folder where a caption file should be; rename it") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid UTF-8 ({e}); save the file as UTF-8") from None
    captions: list[list[str]] = []
    skipped: list[int] = []
    for line_no, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        tokens = tokenize(line)
        if not tokens:
            if skip_untokenizable:
                skipped.append(line_no)
                continue
            raise DataError(
                f"{path}: line {line_no} yields no (ASCII) word tokens: {line.strip()!r}; "
                "fix or delete the line, or pass skip_untokenizable=True to skip such lines"
            )
        captions.append(tokens)
        if expected is not None and len(captions) == expected:
            break
    if skipped:
        logger.warning(
            "%s: skipped %d line(s) without word tokens (lines %s)",
            path,
            len(skipped),
            ", ".join(map(str, skipped[:10])) + (" ..." if len(skipped) > 10 else ""),
        )
    if not captions:
        raise DataError(f"{path}: the file holds no caption; write one caption per line into it")
    if expected is not None and len(captions) < expected:
        msg = (
            f"{path}: {len(captions)} non-empty caption(s), expected {expected} "
            "(captions_per_image). The original loader silently misaligned the captions of every "
            "later image in this case; add captions to the file or lower captions_per_image"
        )
        if not allow_fewer:
            raise DataError(msg)
        logger.warning("%s", msg)
    return captions


def sample_caption(
    ids: list[int] | np.ndarray, words_num: int, rng: np.random.Generator
) -> tuple[np.ndarray, int]:
    """Pads or randomly shortens one caption as the original ``get_caption`` (reference §12.3).

    A caption longer than ``words_num`` keeps a random subset of ``words_num`` word positions in
    their original order (shuffle the positions, keep the first ``words_num``, sort them); shorter
    captions are zero-padded. ``rng`` is consumed only when the caption is longer than
    ``words_num``, as the original consumed ``np.random`` only then.

    Args:
        ids: the caption's word ids, (L,), without padding or end token (no zeros).
        words_num: the fixed caption length (``TEXT.WORDS_NUM``).
        rng: random generator for the word dropping.

    Returns:
        ``(caption, length)``: caption (words_num,) int32 zero-padded, length = min(L, words_num).

    Raises:
        ValueError: the caption is empty or contains the padding id 0.
    """
    ids = np.asarray(ids, dtype=np.int64)  # (L,)
    n = int(ids.shape[0])
    if n == 0:
        raise ValueError("empty caption: a caption needs at least one word")
    if np.any(ids == 0):
        raise ValueError(f"caption contains the padding/end id 0: {ids.tolist()}")
    out = np.zeros((words_num,), dtype=np.int32)
    if n <= words_num:
        out[:n] = ids
        return out, n
    positions = np.arange(n)
    rng.shuffle(positions)
    keep = np.sort(positions[:words_num])  # (words_num,), original word order
    out[:] = ids[keep]
    return out, words_num
