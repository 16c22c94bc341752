"""Parity runner: reproduce the original PyTorch modules' saved outputs from their saved weights.

A fixture case is ``NAME.json`` + ``NAME.npz`` (layout in the fixture README). The JSON's ``kind``
selects a runner registered here with :func:`register`; the runner builds the module from
``case_config`` alone, converts the weights, feeds the inputs and returns one :class:`Check` per
output. Nothing is hard-wired to a particular file, so new cases of a known kind (other sizes or
seeds) are tested without code changes. An unknown kind is an error, never a skip.

Command line: ``python -m attngan_jax.parity [DIR]`` (default ``$ATTNGAN_PARITY_DIR`` or
``../shared/parity``) prints one line per case and output with the max abs error.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
from collections.abc import Callable
from typing import Any

import numpy as np

_RUNNERS: dict[str, Callable[[dict, dict, str], list[Check]]] = {}
# kind -> module that registers it (imported lazily so one broken runner does not hide the others).
_MODULES = {
    "rnn_encoder": "attngan_jax.parity.text",
    "g_net": "attngan_jax.parity.gan",
    "d_net": "attngan_jax.parity.disc",
    "damsm_losses": "attngan_jax.parity.losses",
    "gan_losses": "attngan_jax.parity.losses",
    "cnn_encoder": "attngan_jax.parity.inception",
    "inception": "attngan_jax.parity.inception",
}


@dataclasses.dataclass
class Check:
    """One compared output.

    Attributes:
        name: output name (the ``out:`` key without prefix).
        ours: our value, in the fixture's layout (NCHW, (B, D, T)).
        ref: the reference value.
        atol: absolute tolerance.
        rtol: tolerance relative to ``max |ref|`` (added to atol).
    """

    name: str
    ours: np.ndarray
    ref: np.ndarray
    atol: float
    rtol: float = 0.0

    @property
    def max_abs_err(self) -> float:
        """Largest absolute difference (inf on a shape mismatch or a non-finite value)."""
        ours, ref = np.asarray(self.ours, np.float64), np.asarray(self.ref, np.float64)
        if ours.shape != ref.shape:
            return float("inf")
        if ours.size == 0:
            return 0.0
        d = np.abs(ours - ref)
        return float(np.nanmax(np.where(np.isfinite(d), d, np.inf)))

    @property
    def tol(self) -> float:
        """The allowed max abs error."""
        ref = np.asarray(self.ref, np.float64)
        return self.atol + self.rtol * (float(np.max(np.abs(ref))) if ref.size else 0.0)

    @property
    def ok(self) -> bool:
        """Whether the output matches within tolerance."""
        return self.max_abs_err <= self.tol


def register(kind: str) -> Callable:
    """Decorator: ``@register("g_net") def run(case, arrays, case_dir) -> list[Check]``."""

    def deco(fn):
        _RUNNERS[kind] = fn
        return fn

    return deco


def default_dir() -> str:
    """The fixture directory: ``$ATTNGAN_PARITY_DIR`` or ``<repo>/../shared/parity``."""
    env = os.environ.get("ATTNGAN_PARITY_DIR")
    if env:
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.normpath(os.path.join(here, "..", "..", "..", "shared", "parity"))


def list_cases(directory: str) -> list[str]:
    """Names of every case (a ``.json`` with a ``kind`` and an ``.npz`` beside it)."""
    names = []
    for f in sorted(os.listdir(directory)):
        if f.endswith(".json"):
            names.append(f[: -len(".json")])
    return names


def load_case(directory: str, name: str) -> tuple[dict, dict[str, np.ndarray]]:
    """Loads ``name.json`` and ``name.npz``; float16 tensors are widened to float32."""
    with open(os.path.join(directory, name + ".json")) as f:
        case = json.load(f)
    npz = os.path.join(directory, case.get("file", name + ".npz"))
    if not os.path.exists(npz):
        npz = os.path.join(directory, name + ".npz")
    with np.load(npz, allow_pickle=False) as z:
        arrays = {
            k: (z[k].astype(np.float32) if z[k].dtype == np.float16 else z[k]) for k in z.files
        }
    return case, arrays


def split_arrays(arrays: dict[str, np.ndarray]) -> tuple[dict, dict, dict]:
    """(weights keyed by torch name, inputs without ``in:``, outputs without ``out:``)."""
    weights = {k: v for k, v in arrays.items() if not k.startswith(("in:", "out:"))}
    inputs = {k[3:]: v for k, v in arrays.items() if k.startswith("in:")}
    outputs = {k[4:]: v for k, v in arrays.items() if k.startswith("out:")}
    return weights, inputs, outputs


def run_case(directory: str, name: str) -> list[Check]:
    """Runs one case and returns its checks.

    Raises:
        KeyError: the case's ``kind`` has no runner.
        AssertionError: the runner did not check every output the case holds.
    """
    case, arrays = load_case(directory, name)
    kind = case.get("kind")
    if kind in _MODULES and kind not in _RUNNERS:
        importlib.import_module(_MODULES[kind])
    if kind not in _RUNNERS:
        raise KeyError(f"{name}: no parity runner for kind {kind!r} (known: {sorted(_MODULES)})")
    import jax

    with jax.default_matmul_precision("highest"):
        checks = _RUNNERS[kind](case, arrays, directory)
    expected = {k[4:] for k in arrays if k.startswith("out:")}
    missing = expected - {c.name for c in checks}
    assert not missing, f"{name}: runner for {kind!r} left outputs unchecked: {sorted(missing)}"
    return checks


def main(argv: list[str] | None = None) -> int:
    """Runs every case in a directory; prints a line per output; returns 1 on any failure."""
    from attngan_jax.runtime import xla_flags

    xla_flags.apply()  # XLA:CPU flags, before JAX starts its backend
    import sys

    args = sys.argv[1:] if argv is None else argv
    directory = args[0] if args else default_dir()
    bad = 0
    for name in list_cases(directory):
        try:
            checks = run_case(directory, name)
        except Exception as e:  # report and go on with the other cases
            print(f"{name:18s} ERROR {type(e).__name__}: {e}")
            bad += 1
            continue
        for c in checks:
            flag = "ok  " if c.ok else "FAIL"
            print(f"{name:18s} {c.name:42s} {flag} max_abs_err={c.max_abs_err:.3e} tol={c.tol:.1e}")
            bad += not c.ok
    return 1 if bad else 0


def nchw(x: Any) -> np.ndarray:
    """NHWC -> NCHW (our layout to the fixture's)."""
    return np.asarray(x).transpose(0, 3, 1, 2)


def nhwc(x: Any) -> np.ndarray:
    """NCHW -> NHWC (the fixture's layout to ours)."""
    return np.asarray(x).transpose(0, 2, 3, 1)
