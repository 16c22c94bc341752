"""Time one jitted training iteration (or the sampler) of attngan-jax on random weights and data.

Usage::

    python benchmarks/train_step.py --preset=birds128 --batch_size=4 [--steps=7]
        [--dtype=float32|bfloat16] [--pipelined=N] [--json=FILE]

Presets (``bench_common.PRESETS``): ``birds64``/``birds128``/``birds256`` (the original birds widths,
1/2/3 stages, Inception-v3 DAMSM image encoder in the G loss), ``coco256``, ``damsm_birds`` (the
DAMSM step: Inception-v3 at 299, trunk BatchNorm in train mode, + bi-LSTM), ``shapes``
(``configs/shapes.py`` GAN step), ``damsm_shapes`` (its DAMSM step: the small trunk at 32x32,
mirrored negatives) and ``sample_birds256`` (text encoder + generator in eval mode, as
``sampling.generate``; use ``--batch_size=1`` for one caption).

``startup_s`` is process start to the end of the warm-up step (imports, init, compile, one step);
``--compilation_cache=DIR`` turns on ``attngan_jax.runtime.compilation_cache`` there (run twice to see the
second-run start-up). The step is the library's own (``gan.make_train_step`` / ``damsm.make_train_step``),
jitted once with the state donated as ``train_lib`` does. ``compile_s`` is lowering + XLA
compilation; one warm-up call follows, then ``--steps`` timed calls (each waits for its outputs).
FLOPs and bytes come from XLA's ``cost_analysis()`` of the compiled executable.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from attngan_jax.runtime import host_memory, xla_flags  # noqa: E402

if __name__ == "__main__":
    xla_flags.apply()  # XLA:CPU flags, before JAX starts its backend (kept by the restart)
    # glibc reads its malloc tunables only at start-up: restart once with them
    host_memory.reexec_with_malloc_tunables()
_T_START = time.perf_counter()
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_common as bc  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from attngan_jax.configs import attngan_birds, damsm_birds  # noqa: E402
from attngan_jax.configs import shapes as shapes_config  # noqa: E402
from attngan_jax.data import negatives, shapes  # noqa: E402
from attngan_jax.eval import sampling  # noqa: E402
from attngan_jax.models import factory  # noqa: E402
from attngan_jax.models.factory import ModelSpec  # noqa: E402
from attngan_jax.runtime import sharding  # noqa: E402
from attngan_jax.train import damsm, gan  # noqa: E402


def make_config(preset: str, dtype: str):
    """The experiment config of a preset (``config_lib`` builders with the preset's sizes)."""
    p = bc.PRESETS[preset]
    if p["kind"] in ("shapes", "damsm_shapes"):
        c = shapes_config.build("attngan" if p["kind"] == "shapes" else "damsm", "full")
    else:
        c = (damsm_birds if p["kind"] == "damsm" else attngan_birds).get_config()
        with c.unlocked():
            for k in ("gf_dim", "df_dim", "emb_dim", "embed_dim", "z_dim", "condition_dim"):
                setattr(c.model, k, p[k])
            c.model.r_num = p["r_num"]
            c.data.words_num = p["words_num"]
            c.gan.lam = p["lam"]
            for k in ("image_trunk", "small_trunk_width"):  # the tiny presets only
                if k in p:
                    setattr(c.model, k, p[k])
            if p["kind"] != "damsm":
                c.model.num_stages = p["num_stages"]
                c.data.image_sizes = tuple(64 * 2**i for i in range(p["num_stages"]))
    c.dtype = dtype
    return c


def make_spec(preset: str, config) -> ModelSpec:
    """The networks of a preset: its config's, with the preset's vocabulary size."""
    p = bc.PRESETS[preset]
    vocab = len(shapes.IXTOWORD) if p["kind"] in ("shapes", "damsm_shapes") else p["vocab_size"]
    return ModelSpec.from_config(config, vocab_size=vocab)


def make_batch(spec: ModelSpec, batch: int, seed: int = 0) -> dict:
    """Random batch of the right shapes: sorted captions (0-padded), images in [-1, 1]."""
    rng = np.random.default_rng(seed)
    words = spec.words_num
    lens = np.array(bc.caption_lengths(batch, words), np.int32)
    caps = rng.integers(1, spec.vocab_size, (batch, words)).astype(np.int32)
    caps[np.arange(words)[None, :] >= lens[:, None]] = 0
    out = {"captions": caps, "cap_lens": lens, "class_ids": np.arange(batch, dtype=np.int32)}
    for s in spec.image_sizes:
        out[f"image_{s}"] = rng.uniform(-1, 1, (batch, s, s, 3)).astype(np.float32)
    return {k: jnp.asarray(v) for k, v in out.items()}


def random_like(shapes, seed: int = 0):
    """Numpy values for a tree of shapes: He-scaled normal weights, unit BN scale/var, zero rest.

    Stands in for weights that a real run reads from a file (the DAMSM encoders of a GAN run, the
    ImageNet trunk of a DAMSM run: :func:`damsm.load_inception_trunk`): building them with
    the modules' jitted initialisers would add a ~25 s compile and its ~0.5 GB working memory that
    training never has.
    """
    rng = np.random.default_rng(seed)

    def leaf(path, x):
        name = str(getattr(path[-1], "key", path[-1]))
        if name in ("scale", "var"):
            return np.ones(x.shape, x.dtype)
        if len(x.shape) < 2:
            return np.zeros(x.shape, x.dtype)
        std = np.sqrt(2.0 / np.prod(x.shape[:-1]))
        return (std * rng.standard_normal(x.shape)).astype(x.dtype)

    return jax.tree_util.tree_map_with_path(leaf, shapes)


def encoders_for(spec: ModelSpec, image_size: int):
    """Random frozen DAMSM encoders ``{"text": {"params"}, "image": {"params", "batch_stats"}}``."""
    p, bs = random_like(
        jax.eval_shape(lambda k: factory.init_encoders(spec, k, image_size), jax.random.key(1))
    )
    return {"text": {"params": p["text"]}, "image": {"params": p["image"], "batch_stats": bs}}


def build(preset: str, config, batch: int):
    """(function to jit, donate_argnums, ``make_args``) of a preset.

    ``make_args()`` builds the initial arguments; under ``jax.eval_shape`` it gives their shapes.
    """
    kind = bc.PRESETS[preset]["kind"]
    spec = make_spec(preset, config)
    if kind == "damsm":
        tx = damsm.optimizer_for(spec, 299)

        def damsm_args():  # the frozen trunk comes from a file, as in experiment.run_damsm
            init = lambda k, t: damsm.init_state(spec, k, 299, tx, t)  # noqa: E731
            trunk = sharding.put_leafwise(  # host copies freed leaf by leaf, as run_loop does
                lambda: random_like(damsm.trunk_shapes(spec, 299))
            )
            state = jax.jit(init, donate_argnums=1)(jax.random.key(0), trunk)
            return state, make_batch(spec, batch)

        return damsm.make_train_step(config, spec, tx, steps_per_epoch=100), (0,), damsm_args
    if kind == "damsm_shapes":  # the small trunk trained from scratch, mirrored negatives
        size = max(spec.image_sizes)
        tx = damsm.optimizer_for(spec, size)

        def damsm_shapes_args():
            init = lambda k: damsm.init_state(spec, k, size, tx)  # noqa: E731
            return jax.jit(init)(jax.random.key(0)), make_batch(spec, batch)

        tables = negatives.swap_tables(shapes.IXTOWORD) if config.damsm.mirror_negatives else None
        step = damsm.make_train_step(config, spec, tx, steps_per_epoch=100, tables=tables)
        return step, (0,), damsm_shapes_args
    if kind == "sample":
        text = factory.text_encoder(spec)

        def sample_args():
            data = make_batch(spec, batch)
            caps, lens = data["captions"], data["cap_lens"]
            text_vars = jax.jit(lambda k: text.init(k, caps, lens, train=False))(jax.random.key(1))
            g = factory.init_generator(spec, jax.random.key(2))
            z = jax.random.normal(jax.random.key(3), (batch, config.model.z_dim))
            eps = jax.random.normal(jax.random.key(4), (batch, config.model.condition_dim))
            return g, text_vars, caps, lens, z, eps

        return sampling.sampler(spec).__wrapped__, (), sample_args

    def gan_args():
        enc = sharding.put_leafwise(lambda: encoders_for(spec, max(spec.image_sizes)))
        init = lambda e: gan.init_state(config, spec, jax.random.key(0), e)  # noqa: E731
        state = jax.jit(init, donate_argnums=0)(enc)
        return state, make_batch(spec, batch)

    words = shapes.IXTOWORD if kind == "shapes" else None  # hard negatives
    return gan.make_train_step(config, spec, words), (0,), gan_args


def cost(compiled) -> tuple[float, float]:
    """(flops, bytes accessed) from XLA's cost analysis (0 where the backend gives none)."""
    ca = compiled.cost_analysis()
    if isinstance(ca, (list, tuple)):
        ca = ca[0] if ca else {}
    ca = ca or {}
    return float(ca.get("flops", 0.0)), float(ca.get("bytes accessed", 0.0))


def device_peak_memory() -> dict:
    """``device.memory_stats()`` peak/in-use bytes where the backend reports them."""
    stats = jax.devices()[0].memory_stats() or {}
    keep = ("peak_bytes_in_use", "bytes_in_use", "bytes_limit")
    return {k: int(stats[k]) for k in keep if k in stats}


def matmul_flops(n: int = 1024, repeats: int = 7) -> float:
    """float32 FLOP/s of an n×n jitted matmul, best of ``repeats`` (the CPU's practical peak)."""
    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def call_step(compiled, args: tuple, stateful: bool) -> tuple:
    """Calls a compiled preset step and waits for it; returns the next call's arguments.

    A training step (``stateful``: its state is donated) returns its new state first, which
    replaces ``args[0]``; the sampler's arguments are reused as they are.
    """
    out = compiled(*args)
    jax.block_until_ready(out)
    return (out[0], *args[1:]) if stateful else args


def memory_analysis(compiled) -> dict:
    """XLA's static buffer sizes of the compiled step (bytes; ``{}`` where unavailable)."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # noqa: BLE001  (not every backend/jaxlib implements it)
        return {}
    keys = ("argument_size_in_bytes", "output_size_in_bytes", "alias_size_in_bytes",
            "temp_size_in_bytes", "generated_code_size_in_bytes")  # fmt: skip
    return {k: int(getattr(m, k)) for k in keys if hasattr(m, k)}


def run(preset: str, batch: int, steps: int, dtype: str, pipelined: int = 0) -> dict:
    """Builds, compiles and times a preset; returns the result dict.

    ``pipelined`` > 0 also times that many calls dispatched back to back with one wait at the end
    (``pipelined_step_s``: the per-step time of a training loop fed a cached batch, where the host
    dispatches the next step while the device runs this one; the per-step figures wait for each).
    """
    load0 = bc.loadavg()
    config = make_config(preset, dtype)
    fn, donate, make_args = build(preset, config, batch)
    jitted = jax.jit(fn, donate_argnums=donate)
    # As loop.run_loop: compiled from the arguments' shapes before they exist, then the
    # compiler's freed heap returned, then the initialisers run.
    # The shapes are traced through a fresh function so that JAX's trace caches (keyed on the
    # function) let go of the initialiser's trace afterwards, as run_loop's are (~0.1 GB).
    t0 = time.perf_counter()
    lowered = jitted.lower(*jax.eval_shape(lambda: make_args()))
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    del lowered  # the StableHLO module (~50 MB for birds64); run_loop does not keep it either
    host_memory.release_freed_host_memory()
    args = make_args()
    host_memory.release_freed_host_memory()  # as loop.run_loop after initialising the state
    flops, nbytes = cost(compiled)
    stateful = bool(donate)
    args = call_step(compiled, args, stateful)  # warm-up
    startup_s = time.perf_counter() - _T_START
    times, cpu = [], []
    for _ in range(steps):
        t, c = time.perf_counter(), time.process_time()
        args = call_step(compiled, args, stateful)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    pipelined_s = None
    if pipelined > 0:
        t = time.perf_counter()
        for _ in range(pipelined):
            out = compiled(*args)
            args = (out[0], *args[1:]) if stateful else args
        jax.block_until_ready(out)
        pipelined_s = (time.perf_counter() - t) / pipelined
    dev = jax.devices()[0]
    res = {
        "preset": preset,
        "impl": "jax",
        "batch_size": batch,
        "dtype": dtype,
        "steps": steps,
        "trace_lower_s": t1 - t0,
        "startup_s": startup_s,
        "compile_s": {"train_step" if stateful else "generate": t2 - t1},
        **bc.step_stats(times, batch, cpu),
        "peak_rss_mb": bc.peak_rss_mb(),
        "device_memory": device_peak_memory(),
        "memory_analysis": memory_analysis(compiled),
        "pipelined_steps": pipelined,
        "pipelined_step_s": pipelined_s,
        "flops": flops,
        "bytes_accessed": nbytes,
        "device": f"{dev.platform}: {dev.device_kind}",
        "jax_version": jax.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "loadavg_before": load0,
        "loadavg_after": bc.loadavg(),
    }
    peak = bc.cpu_peak(matmul_flops()) if dev.platform == "cpu" else bc.gpu_peak(dev.device_kind)
    res["roofline"] = bc.roofline(peak, flops, nbytes, dtype, res["step_s_median"])
    return res


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", required=True, choices=sorted(bc.PRESETS))
    ap.add_argument("--batch_size", type=int, default=4)
    ap.add_argument("--steps", type=int, default=7)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--json", default=None)
    ap.add_argument(
        "--compilation_cache", default=None, help="enable the persistent cache in this directory"
    )
    ap.add_argument(
        "--pipelined", type=int, default=0, help="also time N steps without waiting between them"
    )
    a = ap.parse_args(argv)
    if a.compilation_cache:
        from attngan_jax.runtime import compilation_cache

        compilation_cache.enable(a.compilation_cache)
    res = run(a.preset, a.batch_size, a.steps, a.dtype, a.pipelined)
    bc.print_table([res])
    bc.write_json(a.json, res)
    return res


if __name__ == "__main__":
    main()
