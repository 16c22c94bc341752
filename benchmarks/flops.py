"""FLOPs of one training step counted from its layer shapes, for a GPU roofline that is real.

XLA's GPU ``cost_analysis()`` leaves out the convolutions that run as cuDNN custom calls (the
H100 run reported 20.8 GFLOP for a birds256 batch-20 step that does ~1 TFLOP), so its FLOP
figure cannot place a step against the compute bound. This counts them itself: it traces the
step (``jax.make_jaxpr``, nothing is compiled or run) and adds up every ``conv_general_dilated`` and
``dot_general`` of the forward and backward pass from its operand shapes, with XLA's own rules
(``HloCostAnalysis``: 2 FLOPs per multiply-add, only the (output, kernel) pairs that land on a real
input element, so padding and the holes of a transposed convolution are not counted). Elementwise
ops and reductions are estimated the same way (one FLOP per output element, one per reduced
element; exp/log/tanh/... are counted apart as transcendentals).

The step is traced with the GPU formulation of every layer (``jax.default_backend()`` reads
``"gpu"`` while tracing: ``attngan_jax.models.layers`` picks the phase-form upsampling convolution
and its CPU gradient kernels only on the CPU), so the count is the GPU's work even when it is made
on a CPU. ``--xla_check`` also compiles that same traced step on the CPU and prints XLA's CPU
``cost_analysis()`` FLOPs beside the count (the CPU analysis counts convolutions; it also counts the
elementwise work that XLA fuses or simplifies differently, so the totals agree only roughly, while
the convolution/matmul part is exact: ``tests/test_gpu_prep.py``).

Usage::

    python benchmarks/flops.py --preset=birds256 --batch_size=20 [--json=FILE] [--xla_check]

JSON: ``flops`` (convolutions + matmuls: the figure for the roofline), ``flops_conv``,
``flops_dot``, ``flops_elementwise`` (estimate), ``flops_total`` (sum), ``transcendentals``,
``num_conv``, ``num_dot`` and, with ``--xla_check``, ``xla_cpu_flops``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from typing import Any
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402
import numpy as np  # noqa: E402

# Primitives counted as one FLOP per output element (HloCostAnalysis::HandleElementwiseOp) ...
_ELEMENTWISE = {
    "add", "sub", "mul", "div", "rem", "max", "min", "neg", "abs", "sign", "floor", "ceil",
    "round", "select_n", "eq", "ne", "lt", "le", "gt", "ge", "and", "or", "not", "xor",
    "clamp", "square", "integer_pow", "convert_element_type", "nextafter", "add_any",
    "shift_left", "shift_right_logical", "shift_right_arithmetic", "is_finite", "copysign",
}  # fmt: skip
# ... except these, which XLA counts as transcendentals.
_TRANSCENDENTAL = {
    "exp", "exp2", "log", "log1p", "expm1", "tanh", "logistic", "sin", "cos", "tan", "atan2",
    "sqrt", "rsqrt", "cbrt", "pow", "erf", "erfc", "erf_inv", "lgamma", "digamma", "asin",
    "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh",
}  # fmt: skip
# One FLOP per input element.
_REDUCTIONS = {
    "reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "reduce_and", "reduce_or",
    "argmax", "argmin", "cumsum", "cummax", "cummin", "cumprod", "cumlogsumexp",
}  # fmt: skip


def _size(aval) -> int:
    return int(math.prod(getattr(aval, "shape", ())))


def _valid_pairs(n_in: int, k: int, n_out: int, stride: int, pad_lo: int, lhs_dil: int,
                 rhs_dil: int) -> int:  # fmt: skip
    """(output, kernel) index pairs of one spatial dimension that read a real input element."""
    o = np.arange(n_out)[:, None]
    kk = np.arange(k)[None, :]
    pos = o * stride - pad_lo + kk * rhs_dil  # position in the dilated, padded input
    ok = (pos >= 0) & (pos % lhs_dil == 0) & (pos // lhs_dil < n_in)
    return int(ok.sum())


def conv_flops(eqn) -> int:
    """FLOPs of a ``conv_general_dilated`` equation, as XLA's ``GetConvolutionFlops``."""
    p = eqn.params
    lhs, rhs = (v.aval for v in eqn.invars)
    out = eqn.outvars[0].aval
    dn = p["dimension_numbers"]
    lhs_spec, rhs_spec, out_spec = dn.lhs_spec, dn.rhs_spec, dn.out_spec
    batch = lhs.shape[lhs_spec[0]] // p.get("batch_group_count", 1)
    cin = lhs.shape[lhs_spec[1]] // p.get("feature_group_count", 1)
    cout = rhs.shape[rhs_spec[0]]
    nsp = len(lhs_spec) - 2
    lhs_dil = p.get("lhs_dilation") or (1,) * nsp
    rhs_dil = p.get("rhs_dilation") or (1,) * nsp
    pairs = 1
    for i in range(nsp):
        pairs *= _valid_pairs(
            lhs.shape[lhs_spec[2 + i]],
            rhs.shape[rhs_spec[2 + i]],
            out.shape[out_spec[2 + i]],
            p["window_strides"][i],
            p["padding"][i][0],
            lhs_dil[i],
            rhs_dil[i],
        )
    return 2 * batch * cin * cout * pairs


def dot_flops(eqn) -> int:
    """FLOPs of a ``dot_general``: 2 x batch x contracting x both free sizes."""
    lhs, rhs = (v.aval for v in eqn.invars)
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    rhs_free = [d for i, d in enumerate(rhs.shape) if i not in rc and i not in rb]
    return 2 * _size(lhs) * int(math.prod(rhs_free))


def _subjaxprs(eqn):
    """(jaxpr, multiplicity) of the sub-computations of an equation (scan bodies x length)."""
    p = eqn.params
    name = eqn.primitive.name
    if name == "cond":
        yield max(p["branches"], key=lambda j: count_jaxpr(j.jaxpr)["flops_total"]).jaxpr, 1
        return
    mult = p["length"] if name == "scan" else 1
    for v in p.values():
        for j in v if isinstance(v, (tuple, list)) else (v,):
            inner = getattr(j, "jaxpr", j)
            if hasattr(inner, "eqns"):
                yield inner, mult


def count_jaxpr(jaxpr) -> dict[str, int]:
    """FLOP counts of a (closed) jaxpr, recursing into calls, custom-gradient rules and scans.

    ``while`` loops are counted once (trip counts are not known from shapes; the steps have none).
    """
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    c = dict(flops_conv=0, flops_dot=0, flops_elementwise=0, transcendentals=0, num_conv=0,
             num_dot=0)  # fmt: skip
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        out = sum(_size(v.aval) for v in eqn.outvars)
        if name == "conv_general_dilated":
            c["flops_conv"] += conv_flops(eqn)
            c["num_conv"] += 1
        elif name == "dot_general":
            c["flops_dot"] += dot_flops(eqn)
            c["num_dot"] += 1
        elif name in _ELEMENTWISE:
            c["flops_elementwise"] += out
        elif name in _TRANSCENDENTAL:
            c["transcendentals"] += out
        elif name in _REDUCTIONS:
            c["flops_elementwise"] += sum(_size(v.aval) for v in eqn.invars)
        else:
            for sub, mult in _subjaxprs(eqn):
                for k, v in count_jaxpr(sub).items():
                    if k != "flops_total":
                        c[k] += mult * v
    c["flops_total"] = c["flops_conv"] + c["flops_dot"] + c["flops_elementwise"]
    return c


def dead_code_eliminated(closed):
    """The jaxpr without equations whose results nothing uses, as XLA removes them before it
    counts (e.g. a forward convolution whose output only a ``sum`` reads: its gradient is ones).
    Uses JAX's own pass (``partial_eval.dce_jaxpr``, recursing into calls); the jaxpr unchanged
    where that internal API is missing."""
    try:
        from jax._src.interpreters import partial_eval as pe

        jaxpr, _ = pe.dce_jaxpr(closed.jaxpr, [True] * len(closed.jaxpr.outvars))
        return jaxpr
    except (ImportError, AttributeError, TypeError):
        return closed


@contextlib.contextmanager
def gpu_formulation():
    """While active, ``jax.default_backend()`` reads ``"gpu"``: layers trace their GPU form."""
    with mock.patch.object(jax, "default_backend", lambda: "gpu"):
        yield


def count(fn, *args, gpu: bool = True) -> dict[str, Any]:
    """Counts of ``fn(*args)`` (arrays or ``jax.ShapeDtypeStruct``; nothing is run).

    Returns:
        :func:`count_jaxpr`'s dict plus ``flops`` = convolutions + matmuls and ``jaxpr`` (the
        closed jaxpr, for :func:`xla_cpu_flops`).
    """
    # JAX caches traces by function and argument shapes, not by what default_backend() said:
    # clear them and trace a fresh function so the other formulation is never reused.
    jax.clear_caches()
    with gpu_formulation() if gpu else contextlib.nullcontext():
        closed = jax.make_jaxpr(lambda *a: fn(*a))(*args)
    c = count_jaxpr(dead_code_eliminated(closed))
    return {"flops": c["flops_conv"] + c["flops_dot"], **c, "jaxpr": closed}


def xla_cpu_flops(closed, *args) -> float:
    """XLA's CPU ``cost_analysis()`` FLOPs of a traced jaxpr, compiled for the CPU as it is."""
    from jax.extend.core import jaxpr_as_fun

    fn = jaxpr_as_fun(closed)
    cpu = jax.devices("cpu")[0]
    shapes = [jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=None) for a in args]
    with jax.default_device(cpu):
        compiled = jax.jit(fn).lower(*shapes).compile()
    ca = compiled.cost_analysis()
    if isinstance(ca, (list, tuple)):
        ca = ca[0] if ca else {}
    return float((ca or {}).get("flops", 0.0))


def step_and_args(preset: str, batch: int, dtype: str = "float32", config=None):
    """The preset's jitted-step function and its abstract arguments (``train_step.build``)."""
    import train_step as ts

    config = config if config is not None else ts.make_config(preset, dtype)
    fn, _, make_args = ts.build(preset, config, batch)
    with gpu_formulation():
        args = jax.eval_shape(make_args)
    return fn, jax.tree_util.tree_leaves(args), args


def preset_flops(preset: str, batch: int, dtype: str = "float32", xla_check: bool = False,
                 config=None) -> dict[str, Any]:  # fmt: skip
    """The JSON of one preset: counts, timings and (``xla_check``) XLA's CPU figure."""
    t0 = time.perf_counter()
    fn, leaves, args = step_and_args(preset, batch, dtype, config)
    res = count(fn, *args)
    closed = res.pop("jaxpr")
    out = {
        "preset": preset,
        "batch_size": batch,
        "dtype": dtype,
        **res,
        "flops_per_image": res["flops"] / batch,
        "formulation": "gpu (direct upsample conv, XLA conv gradients)",
        "trace_s": time.perf_counter() - t0,
        "jax_version": jax.__version__,
    }
    if xla_check:
        t1 = time.perf_counter()
        out["xla_cpu_flops"] = xla_cpu_flops(closed, *leaves)
        out["xla_compile_s"] = time.perf_counter() - t1
    return out


def main(argv=None) -> dict:
    import bench_common as bc

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="birds256", choices=sorted(bc.PRESETS))
    ap.add_argument("--batch_size", type=int, default=20)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--xla_check", action="store_true", help="also XLA's CPU cost analysis")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    res = preset_flops(a.preset, a.batch_size, a.dtype, a.xla_check)
    g = 1e9
    print(
        f"{a.preset} batch {a.batch_size} {a.dtype}: {res['flops'] / g:.1f} GFLOP conv+matmul "
        f"({res['num_conv']} convs {res['flops_conv'] / g:.1f}, {res['num_dot']} dots "
        f"{res['flops_dot'] / g:.1f}), elementwise ~{res['flops_elementwise'] / g:.1f}, "
        f"transcendentals {res['transcendentals'] / g:.2f} G; traced in {res['trace_s']:.1f} s"
    )
    if "xla_cpu_flops" in res:
        print(
            f"XLA CPU cost analysis: {res['xla_cpu_flops'] / g:.1f} GFLOP "
            f"(count total / XLA = {res['flops_total'] / max(res['xla_cpu_flops'], 1):.3f})"
        )
    bc.write_json(a.json, res)
    return res


if __name__ == "__main__":
    main()
