"""Time the ORIGINAL AttnGAN iteration in PyTorch (CPU or CUDA), side by side with ``train_step.py``.

Usage::

    python benchmarks/torch_reference.py --preset=birds128 --batch_size=4 [--steps=7]
        [--threads=2] [--device=cpu|cuda] [--warmup=N] [--json=FILE]
    python benchmarks/torch_reference.py --validate     # against /work/shared/parity fixtures

``--device=cuda``: models, optimisers and the batch on the GPU; ``cudnn.benchmark = True`` as the
original's ``main.py`` sets it (``--no_cudnn_benchmark`` to turn it off) and PyTorch's default TF32
settings (convolutions TF32, matmuls float32; both recorded in the JSON, ``--tf32=on|off`` to force
them). Every timed iteration is bracketed by ``torch.cuda.synchronize()``. Peak memory:
``torch.cuda.reset_peak_memory_stats()`` at the start, then ``max_memory_allocated`` over the whole
run (``max_memory_allocated``, also as ``device_memory.peak_bytes_in_use``, the key
``train_step.py`` uses), and again from the end of the warm-up, i.e. the steady state without
cuDNN's benchmark trials (``max_memory_allocated_steady``); ``null`` on the CPU.

Needs ``pip install torch==2.13.0`` (not a dependency of the package). Networks and losses are
``torch_models.py`` (the original's modules and key names). One GAN iteration is ``trainer.py``'s
(reference §11): frozen text encoder (eval) -> ONE generator forward (train-mode BN) -> for each D:
zero_grad, ``discriminator_loss`` on (real, fake.detach()), backward, Adam step -> ``generator_loss``
through the *updated* Ds (+ λ·DAMSM through the frozen eval-mode Inception encoder, 256 -> 299
bilinear align_corners=True) + KL, backward (which, as in the original, also fills the Ds' grads),
Adam step -> EMA of G's parameters. The DAMSM step is ``pretrain_DAMSM.py``'s: Inception in train
mode (frozen weights, batch-stat BN), bi-LSTM with dropout, ``w0+w1+s0+s1``, backward, clip the RNN
grads at 0.25, Adam. Same presets, batches and timing protocol as ``train_step.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_common as bc  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch_models as tm  # noqa: E402

GAMMAS = (4.0, 5.0, 10.0)


def make_batch(p: dict, batch: int, sizes: list[int], seed: int = 0, device="cpu") -> dict:
    """Random sorted captions and NCHW images in [-1, 1] (same recipe as ``train_step.py``).

    Tensors on ``device``; ``class_ids`` stay numpy (the original's ``class_ids`` were numpy too).
    """
    rng = np.random.default_rng(seed)
    words = p["words_num"]
    lens = np.array(bc.caption_lengths(batch, words), np.int64)
    caps = rng.integers(1, p["vocab_size"], (batch, words)).astype(np.int64)
    caps[np.arange(words)[None, :] >= lens[:, None]] = 0
    imgs = [
        torch.from_numpy(rng.uniform(-1, 1, (batch, 3, s, s)).astype(np.float32)).to(device)
        for s in sizes
    ]
    return {
        "captions": torch.from_numpy(caps).to(device),
        "cap_lens": torch.from_numpy(lens).to(device),  # on the GPU, as the original's
        "class_ids": np.arange(batch),
        "labels": torch.arange(batch, device=device),
        "imgs": imgs,
    }


def adam(params):
    return torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999))


def build_gan(p: dict, batch: int, device="cpu"):
    """Models, optimisers and ``iteration()`` of one AttnGAN training iteration (§11)."""
    torch.manual_seed(0)
    text = tm.RNN_ENCODER(p["vocab_size"], p["embed_dim"], p["emb_dim"]).eval().to(device)
    image = tm.CNN_ENCODER(p["emb_dim"], align_corners=True).eval().to(device)
    for m in (text, image):
        for q in m.parameters():
            q.requires_grad = False
    stages = p["num_stages"]
    g = tm.G_NET(p["gf_dim"], p["emb_dim"], p["z_dim"], p["condition_dim"], p["r_num"], stages)
    ds = [tm.D_NET(64 * 2**i, p["df_dim"], p["emb_dim"]) for i in range(stages)]
    for m in (g, *ds):
        m.apply(tm.weights_init)
        m.to(device)
    opt_g, opt_ds = adam(g.parameters()), [adam(d.parameters()) for d in ds]
    avg = [q.detach().clone() for q in g.parameters()]
    data = make_batch(p, batch, [64 * 2**i for i in range(stages)], device=device)
    noise = torch.empty(batch, p["z_dim"], device=device)
    gl = (*GAMMAS, p["lam"])

    def iteration():
        caps, lens = data["captions"], data["cap_lens"]
        words, sent = text(caps, lens)
        words, sent = words.detach(), sent.detach()
        mask = (caps == 0)[:, : words.size(2)]
        noise.normal_(0, 1)
        fakes, _, mu, logvar, _ = g(noise, sent, words, mask)
        for i, d in enumerate(ds):
            d.zero_grad()
            err_d = tm.discriminator_loss(d, data["imgs"][i], fakes[i], sent)
            err_d.backward()
            opt_ds[i].step()
        g.zero_grad()
        err_g = tm.generator_loss(
            ds, image, fakes, words, sent, data["labels"], lens, data["class_ids"], gl
        )
        err_g = err_g + tm.kl_loss(mu, logvar)
        err_g.backward()
        opt_g.step()
        with torch.no_grad():
            for a, q in zip(avg, g.parameters()):
                a.mul_(0.999).add_(q.data, alpha=0.001)
        return float(err_g.detach())

    return iteration


def build_damsm(p: dict, batch: int, device="cpu"):
    """``iteration()`` of one DAMSM pretraining step (§10)."""
    torch.manual_seed(0)
    rnn = tm.RNN_ENCODER(p["vocab_size"], p["embed_dim"], p["emb_dim"]).train().to(device)
    cnn = tm.CNN_ENCODER(p["emb_dim"], align_corners=True).train().to(device)
    for name, q in cnn.named_parameters():
        q.requires_grad = name.startswith(("emb_features", "emb_cnn_code"))
    params = list(rnn.parameters()) + [q for q in cnn.parameters() if q.requires_grad]
    opt = adam(params)
    data = make_batch(p, batch, [299], device=device)

    def iteration():
        rnn.zero_grad()
        cnn.zero_grad()
        feats, code = cnn(data["imgs"][0])
        words, sent = rnn(data["captions"], data["cap_lens"])
        w0, w1 = tm.words_loss(
            feats, words, data["labels"], data["cap_lens"], data["class_ids"], GAMMAS
        )
        s0, s1 = tm.sent_loss(code, sent, data["labels"], data["class_ids"], GAMMAS[2])
        loss = w0 + w1 + s0 + s1
        loss.backward()
        torch.nn.utils.clip_grad_norm_(rnn.parameters(), 0.25)
        opt.step()
        return float(loss)

    return iteration


def tensor_device(device: str) -> str:
    """Where ``run`` puts models and tensors for ``device`` (a seam: the tests run the CUDA
    branch's bookkeeping on CPU tensors with a stand-in ``torch.cuda``)."""
    return device


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _tf32(mode: str) -> dict:
    """Applies ``--tf32`` (``default`` leaves PyTorch's settings) and returns the settings used."""
    if mode != "default":
        torch.backends.cudnn.allow_tf32 = mode == "on"
        torch.backends.cuda.matmul.allow_tf32 = mode == "on"
    return {
        "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
        "matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
    }


def run(
    preset: str,
    batch: int,
    steps: int,
    threads: int,
    device: str = "cpu",
    warmup: int | None = None,
    cudnn_benchmark: bool = True,
    tf32: str = "default",
) -> dict:
    """Builds and times a preset; returns the result dict (same keys as ``train_step.py``).

    Args:
        preset: a ``bench_common.PRESETS`` name of kind ``gan`` or ``damsm``.
        batch: batch size.
        steps: timed iterations (after the warm-up).
        threads: ``torch.set_num_threads``.
        device: ``"cpu"`` or ``"cuda"``.
        warmup: untimed iterations first (default 1 on the CPU, 3 on CUDA, where cuDNN's
            benchmark mode tries its algorithms in the first iterations).
        cudnn_benchmark: ``torch.backends.cudnn.benchmark`` (CUDA; the original sets it).
        tf32: ``"default"``, ``"on"`` or ``"off"`` (CUDA).
    """
    if device not in ("cpu", "cuda"):
        raise SystemExit(f"--device must be cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            f"--device=cuda but torch {torch.__version__} sees no CUDA device "
            f"(torch.version.cuda={torch.version.cuda})"
        )
    torch.set_num_threads(threads)
    warmup = (3 if device == "cuda" else 1) if warmup is None else warmup
    cuda = device == "cuda"
    extra = {}
    if cuda:
        torch.backends.cudnn.benchmark = cudnn_benchmark
        extra = {"cudnn_benchmark": cudnn_benchmark, **_tf32(tf32)}
        torch.cuda.reset_peak_memory_stats()
    load0 = bc.loadavg()
    p = bc.PRESETS[preset]
    t_build = time.perf_counter()
    if p["kind"] == "gan":
        it = build_gan(p, batch, tensor_device(device))
    elif p["kind"] == "damsm":
        it = build_damsm(p, batch, tensor_device(device))
    else:
        raise SystemExit(f"preset {preset!r} has no PyTorch reference (gan and damsm presets only)")
    t_warm = time.perf_counter()
    loss = None
    for _ in range(warmup):
        loss = it()
    _sync(device)
    warmup_s = time.perf_counter() - t_warm
    if cuda:
        peak_warmup = torch.cuda.max_memory_allocated()
        torch.cuda.reset_peak_memory_stats()  # the steady state: what the timed steps need
    times, cpu = [], []
    for _ in range(steps):
        _sync(device)
        t, c = time.perf_counter(), time.process_time()
        loss = it()
        _sync(device)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    peak = peak_steady = reserved = None
    if cuda:
        peak_steady = torch.cuda.max_memory_allocated()
        peak = max(peak_warmup, peak_steady)
        reserved = torch.cuda.max_memory_reserved()
        name = f"cuda: {torch.cuda.get_device_name()}, torch {torch.__version__}"
        name += f" (CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()})"
    else:
        name = f"cpu: torch {torch.__version__}, {torch.get_num_threads()} threads"
    res = {
        "preset": preset,
        "impl": "torch",
        "batch_size": batch,
        "dtype": "float32",
        "steps": steps,
        "warmup_steps": warmup,
        "build_s": t_warm - t_build,
        "warmup_s": warmup_s,
        "compile_s": {},
        **bc.step_stats(times, batch, cpu),
        "peak_rss_mb": bc.peak_rss_mb(),
        "max_memory_allocated": peak,
        "max_memory_allocated_steady": peak_steady,
        "max_memory_reserved": reserved,
        "device_memory": {"peak_bytes_in_use": peak} if cuda else {},
        "last_loss": loss,
        "device": name,
        "device_kind": torch.cuda.get_device_name() if cuda else "cpu",
        "torch_version": torch.__version__,
        **extra,
        "loadavg_before": load0,
        "loadavg_after": bc.loadavg(),
    }
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", choices=sorted(bc.PRESETS))
    ap.add_argument("--batch_size", type=int, default=4)
    ap.add_argument("--steps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--warmup", type=int, default=None, help="default 1 (cpu) / 3 (cuda)")
    ap.add_argument("--no_cudnn_benchmark", action="store_true")
    ap.add_argument("--tf32", default="default", choices=["default", "on", "off"])
    ap.add_argument("--json", default=None)
    ap.add_argument("--validate", action="store_true", help="check against the parity fixtures")
    ap.add_argument("--parity_dir", default="/work/shared/parity")
    a = ap.parse_args(argv)
    if a.validate:
        from torch_validate import validate

        torch.set_num_threads(a.threads)
        errs = validate(a.parity_dir)
        bc.write_json(a.json, errs)
        return errs
    if not a.preset:
        ap.error("--preset is required (or --validate)")
    res = run(
        a.preset,
        a.batch_size,
        a.steps,
        a.threads,
        device=a.device,
        warmup=a.warmup,
        cudnn_benchmark=not a.no_cudnn_benchmark,
        tf32=a.tf32,
    )
    bc.print_table([res])
    bc.write_json(a.json, res)
    return res


if __name__ == "__main__":
    main()
