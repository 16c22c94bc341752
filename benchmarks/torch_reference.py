"""Time the ORIGINAL AttnGAN iteration in PyTorch (CPU), side by side with ``train_step.py``.

Usage::

    python benchmarks/torch_reference.py --preset=birds128 --batch_size=4 [--steps=7]
        [--threads=2] [--json=FILE]
    python benchmarks/torch_reference.py --validate     # against /work/shared/parity fixtures

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


def make_batch(p: dict, batch: int, sizes: list[int], seed: int = 0) -> dict:
    """Random sorted captions and NCHW images in [-1, 1] (same recipe as ``train_step.py``)."""
    rng = np.random.default_rng(seed)
    words = p["words_num"]
    lens = np.array(bc.caption_lengths(batch, words), np.int64)
    caps = rng.integers(1, p["vocab_size"], (batch, words)).astype(np.int64)
    caps[np.arange(words)[None, :] >= lens[:, None]] = 0
    imgs = [
        torch.from_numpy(rng.uniform(-1, 1, (batch, 3, s, s)).astype(np.float32)) for s in sizes
    ]
    return {
        "captions": torch.from_numpy(caps),
        "cap_lens": torch.from_numpy(lens),
        "class_ids": np.arange(batch),
        "labels": torch.arange(batch),
        "imgs": imgs,
    }


def adam(params):
    return torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999))


def build_gan(p: dict, batch: int):
    """Models, optimisers and ``iteration()`` of one AttnGAN training iteration (§11)."""
    torch.manual_seed(0)
    text = tm.RNN_ENCODER(p["vocab_size"], p["embed_dim"], p["emb_dim"]).eval()
    image = tm.CNN_ENCODER(p["emb_dim"], align_corners=True).eval()
    for m in (text, image):
        for q in m.parameters():
            q.requires_grad = False
    stages = p["num_stages"]
    g = tm.G_NET(p["gf_dim"], p["emb_dim"], p["z_dim"], p["condition_dim"], p["r_num"], stages)
    ds = [tm.D_NET(64 * 2**i, p["df_dim"], p["emb_dim"]) for i in range(stages)]
    for m in (g, *ds):
        m.apply(tm.weights_init)
    opt_g, opt_ds = adam(g.parameters()), [adam(d.parameters()) for d in ds]
    avg = [q.detach().clone() for q in g.parameters()]
    data = make_batch(p, batch, [64 * 2**i for i in range(stages)])
    noise = torch.empty(batch, p["z_dim"])
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
        return float(err_g)

    return iteration


def build_damsm(p: dict, batch: int):
    """``iteration()`` of one DAMSM pretraining step (§10)."""
    torch.manual_seed(0)
    rnn = tm.RNN_ENCODER(p["vocab_size"], p["embed_dim"], p["emb_dim"]).train()
    cnn = tm.CNN_ENCODER(p["emb_dim"], align_corners=True).train()
    for name, q in cnn.named_parameters():
        q.requires_grad = name.startswith(("emb_features", "emb_cnn_code"))
    params = list(rnn.parameters()) + [q for q in cnn.parameters() if q.requires_grad]
    opt = adam(params)
    data = make_batch(p, batch, [299])

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


def run(preset: str, batch: int, steps: int, threads: int) -> dict:
    """Builds and times a preset; returns the result dict (same keys as ``train_step.py``)."""
    torch.set_num_threads(threads)
    load0 = bc.loadavg()
    p = bc.PRESETS[preset]
    if p["kind"] == "gan":
        it = build_gan(p, batch)
    elif p["kind"] == "damsm":
        it = build_damsm(p, batch)
    else:
        raise SystemExit(f"preset {preset!r} has no PyTorch reference (gan and damsm presets only)")
    loss = it()  # warm-up
    times, cpu = [], []
    for _ in range(steps):
        t, c = time.perf_counter(), time.process_time()
        loss = it()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    res = {
        "preset": preset,
        "impl": "torch",
        "batch_size": batch,
        "dtype": "float32",
        "steps": steps,
        "compile_s": {},
        **bc.step_stats(times, batch, cpu),
        "peak_rss_mb": bc.peak_rss_mb(),
        "last_loss": loss,
        "device": f"cpu: torch {torch.__version__}, {torch.get_num_threads()} threads",
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
    res = run(a.preset, a.batch_size, a.steps, a.threads)
    bc.print_table([res])
    bc.write_json(a.json, res)
    return res


if __name__ == "__main__":
    main()
