"""Where the DAMSM term of the generator loss spends its time: Inception-v3, layer by layer.

Usage::

    python benchmarks/studies/inception_layers.py [--batch_size=4] [--size=299] [--top=20] [--json=FILE] \
        [--torch [--threads=2]]

Times, on random weights and images, (1) the whole trunk (``models.inception.InceptionTrunk``,
eval-mode BatchNorm as in the GAN step) forward, and forward + gradient w.r.t. the input images
(what ``gan.generator_loss`` needs: the trunk is frozen, so no weight gradients), then
(2) each of its 94 convolutions alone (XLA's convolution on the shape it sees in the trunk):
forward, and gradient w.r.t. its input. The sums show how much of the trunk's backward is
convolution and how much is everything else (ReLU/BatchNorm masks, pool gradients, concatenation
splits, kernel transposes); the per-layer rates (GFLOP/s) show how close each convolution runs to
the CPU's matmul rate (best of 7 1,024² matmuls, printed for reference). Medians of ``--repeats`` calls.

``--torch`` (needs ``pip install torch==2.13.0``) also times the original's ``CNN_ENCODER``
(``benchmarks/torch_models.py``: the same trunk plus its two small embedding heads, eval mode,
frozen weights) on the same input, forward and forward + input gradient, with ``--threads`` threads:
the DAMSM term side by side, which bounds the speed-up of the GAN iterations it dominates (birds64).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # benchmarks/

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402
from train_step import matmul_flops  # noqa: E402

import attngan_jax  # noqa: E402,F401  (XLA:CPU flags before JAX starts)
from attngan_jax.models import inception  # noqa: E402


def median_ms(f, *args, repeats: int = 7) -> float:
    """Median wall time of ``f(*args)`` in ms after one warm-up call."""
    jax.block_until_ready(f(*args))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(f(*args))
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e3


def trunk_convs(model, variables, x) -> list[dict]:
    """Every convolution of the trunk (``BasicConv2d.convolve``): name, input, kernel, strides."""
    convs = []

    def record(next_fun, args, kwargs, context):
        m = context.module
        if isinstance(m, inception.BasicConv2d) and context.method_name == "convolve":
            (kh, kw), (ph, pw) = inception._pair(m.kernel), inception._pair(m.padding)
            convs.append(
                {
                    "name": "/".join(m.scope.path[-2:]),
                    "x_shape": tuple(args[0].shape),
                    "kernel": (kh, kw, args[0].shape[-1], m.features),
                    "strides": (m.stride, m.stride),
                    "padding": ((ph, ph), (pw, pw)),
                }
            )
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
        jax.eval_shape(lambda v, x: model.apply(v, x), variables, x)
    expected = sum(max(1, len(units)) for _, units in inception.TRUNK_LAYOUT)  # 94
    if len(convs) != expected:
        raise RuntimeError(f"recorded {len(convs)} of the trunk's {expected} convolutions")
    return convs


def time_conv(c: dict, repeats: int) -> dict:
    """Forward and input-gradient time of one convolution, alone."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal(c["x_shape"], np.float32))
    w = jnp.asarray(rng.standard_normal(c["kernel"], np.float32) * 0.05)

    def conv(x, w):
        return lax.conv_general_dilated(
            x, w, c["strides"], c["padding"], dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    fwd = jax.jit(conv)
    y = fwd(x, w)
    dx = jax.jit(lambda x, w, g: jax.vjp(lambda x: conv(x, w), x)[1](g)[0])
    flops = 2 * int(np.prod(y.shape)) * int(np.prod(c["kernel"][:3]))
    t_fwd = median_ms(fwd, x, w, repeats=repeats)
    t_dx = median_ms(dx, x, w, jnp.ones_like(y), repeats=repeats)
    return {
        **c,
        "gflop": flops / 1e9,
        "fwd_ms": t_fwd,
        "dx_ms": t_dx,
        "fwd_gflop_s": flops / t_fwd / 1e6,
        "dx_gflop_s": flops / t_dx / 1e6,
    }


def torch_encoder_ms(batch: int, size: int, repeats: int, threads: int) -> dict:
    """The original's CNN_ENCODER forward and forward + input gradient, median ms (needs torch)."""
    import torch
    import torch_models

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    encoder = torch_models.CNN_ENCODER().eval()
    for p in encoder.parameters():
        p.requires_grad_(False)  # frozen, as in the G loss: input gradients only
    x = torch.rand(batch, 3, size, size) * 2 - 1

    def fwd():
        with torch.no_grad():
            return encoder(x)

    def fwd_dx():
        xi = x.clone().requires_grad_(True)
        features, code = encoder(xi)
        (features.sum() + code.sum()).backward()
        return xi.grad

    return {  # torch's CPU ops are synchronous; block_until_ready passes its tensors through
        "torch_fwd_ms": median_ms(fwd, repeats=repeats),
        "torch_fwd_dx_ms": median_ms(fwd_dx, repeats=repeats),
        "torch_threads": threads,
    }


def main(argv=None) -> dict:
    from attngan_jax.runtime import xla_flags

    xla_flags.apply()  # XLA:CPU flags, before JAX starts its backend
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch_size", type=int, default=4)
    ap.add_argument("--size", type=int, default=299)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--top", type=int, default=20, help="layers listed, largest dx - fwd first")
    ap.add_argument("--json", default=None)
    ap.add_argument("--torch", action="store_true", help="also time the original (PyTorch)")
    ap.add_argument("--threads", type=int, default=2, help="PyTorch threads (--torch)")
    a = ap.parse_args(argv)

    model = inception.InceptionTrunk()
    x = jax.random.uniform(
        jax.random.key(0), (a.batch_size, a.size, a.size, 3), minval=-1.0, maxval=1.0
    )
    variables = jax.jit(model.init)(jax.random.key(1), x)

    def loss(variables, x):  # both outputs are used by the DAMSM losses
        mixed_6e, pooled = model.apply(variables, x)
        return jnp.sum(mixed_6e) + jnp.sum(pooled)

    fwd = jax.jit(model.apply)
    fwd_dx = jax.jit(jax.value_and_grad(loss, argnums=1))
    res = {
        "batch_size": a.batch_size,
        "size": a.size,
        "device": str(jax.devices()[0].device_kind),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "trunk_fwd_ms": median_ms(fwd, variables, x, repeats=a.repeats),
        "trunk_fwd_dx_ms": median_ms(fwd_dx, variables, x, repeats=a.repeats),
    }
    res["matmul_gflop_s"] = matmul_flops() / 1e9
    print(
        f"trunk, batch {a.batch_size} at {a.size}: forward {res['trunk_fwd_ms']:.0f} ms, "
        f"forward + input gradient {res['trunk_fwd_dx_ms']:.0f} ms "
        f"(1,024² matmul: {res['matmul_gflop_s']:.0f} GFLOP/s)"
    )
    if a.torch:
        res.update(torch_encoder_ms(a.batch_size, a.size, a.repeats, a.threads))
        print(
            f"the original's CNN_ENCODER, {a.threads} threads: forward {res['torch_fwd_ms']:.0f} ms, "
            f"forward + input gradient {res['torch_fwd_dx_ms']:.0f} ms"
        )

    layers = [time_conv(c, a.repeats) for c in trunk_convs(model, variables, x)]
    res["layers"] = layers
    res["conv_fwd_ms"] = sum(r["fwd_ms"] for r in layers)
    res["conv_dx_ms"] = sum(r["dx_ms"] for r in layers)
    res["conv_gflop"] = sum(r["gflop"] for r in layers)
    backward = res["trunk_fwd_dx_ms"] - res["trunk_fwd_ms"]
    print(
        f"{len(layers)} convolutions alone: forward {res['conv_fwd_ms']:.0f} ms, input gradient "
        f"{res['conv_dx_ms']:.0f} ms ({res['conv_gflop']:.1f} GFLOP each way); the trunk's "
        f"backward {backward:.0f} ms, of which not convolution: "
        f"{backward - res['conv_dx_ms']:.0f} ms"
    )
    print(
        f"\n{'layer':34s} {'input':>18s} {'kernel':>20s} {'s':>2s} "
        f"{'fwd ms':>7s} {'GF/s':>5s} {'dx ms':>7s} {'GF/s':>5s}"
    )
    for r in sorted(layers, key=lambda r: r["fwd_ms"] - r["dx_ms"])[: a.top]:
        print(
            f"{r['name']:34s} {str(r['x_shape']):>18s} {str(r['kernel']):>20s} "
            f"{r['strides'][0]:>2d} {r['fwd_ms']:7.1f} {r['fwd_gflop_s']:5.0f} "
            f"{r['dx_ms']:7.1f} {r['dx_gflop_s']:5.0f}"
        )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return res


if __name__ == "__main__":
    main()
