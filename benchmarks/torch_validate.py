"""Checks ``torch_models.py`` against the parity fixtures (the original code's saved outputs).

Every fixture's weights are loaded with ``load_state_dict(strict=True)`` (so the module structure
and key names are the original's), its inputs are fed, and the max |difference| of each output is
printed and returned. Used by ``torch_reference.py --validate``.
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch
import torch_models as tm


def _load(parity_dir: str, name: str):
    z = np.load(os.path.join(parity_dir, name + ".npz"))
    cfg = json.load(open(os.path.join(parity_dir, name + ".json")))["case_config"]
    w = {
        k: torch.from_numpy(z[k].astype(np.float32) if z[k].dtype == np.float16 else z[k])
        for k in z.files
        if not k.startswith(("in:", "out:"))
    }
    ins = {k[3:]: z[k] for k in z.files if k.startswith("in:")}
    outs = {k[4:]: z[k] for k in z.files if k.startswith("out:")}
    return cfg, w, ins, outs


def _err(a, b) -> float:
    a = a.detach().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    return float(np.max(np.abs(a.astype(np.float64) - np.asarray(b, np.float64))))


def _sub(w: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in w.items() if k.startswith(prefix)}


@torch.no_grad()
def validate(parity_dir: str) -> dict:
    """Max abs errors per fixture output (G, D64/128/256, CNN encoder, RNN encoder, GAN losses)."""
    errs = {}
    t = torch.from_numpy
    cfg, w, ins, outs = _load(parity_dir, "c_g_net")
    g = tm.G_NET(
        cfg["GF_DIM"],
        cfg["EMBEDDING_DIM"],
        cfg["Z_DIM"],
        cfg["CONDITION_DIM"],
        cfg["R_NUM"],
        cfg["BRANCH_NUM"],
    )
    g.load_state_dict(w, strict=True)
    g.eval()
    imgs, atts, mu, logvar, c = g(
        t(ins["z"]), t(ins["sent_emb"]), t(ins["word_embs"]), t(ins["mask"]), t(ins["eps"])
    )
    for i, s in enumerate((64, 128, 256)):
        errs[f"g_net/fake_img_{s}"] = _err(imgs[i], outs[f"fake_img_{s}"])
    errs["g_net/att_map_2"] = _err(atts[1], outs["att_map_2"])
    errs["g_net/mu"] = _err(mu, outs["mu"])
    for s in (64, 128, 256):
        cfg, w, ins, outs = _load(parity_dir, f"d_d_net{s}")
        d = tm.D_NET(s, cfg["DF_DIM"], cfg["EMBEDDING_DIM"])
        d.load_state_dict(w, strict=True)
        d.eval()
        code = d(t(ins["imgs"]))
        errs[f"d_net{s}/img_code"] = _err(code, outs["img_code"])
        errs[f"d_net{s}/cond"] = _err(
            d.COND_DNET(code, t(ins["sent_emb"])), outs["cond_logits"]
        )  # stored as probabilities
    cfg, w, ins, outs = _load(parity_dir, "b_cnn_encoder")
    enc = tm.CNN_ENCODER(cfg["nef"], align_corners=True)
    enc.load_state_dict(w, strict=True)
    enc.eval()
    f, code = enc(t(ins["imgs_256"]))
    errs["cnn_encoder/features_256_align_corners_true"] = _err(
        f, outs["features_256_align_corners_true"]
    )
    errs["cnn_encoder/cnn_code_256_align_corners_true"] = _err(
        code, outs["cnn_code_256_align_corners_true"]
    )
    cfg, w, ins, outs = _load(parity_dir, "a_rnn_encoder")
    rnn = tm.RNN_ENCODER(cfg["ntoken"], cfg["ninput"], cfg["nhidden"])
    w = {k: v for k, v in w.items()}
    rnn.load_state_dict(w, strict=True)
    rnn.eval()
    words, sent = rnn(t(ins["captions"]), t(ins["cap_lens"]))
    errs["rnn_encoder/words_emb"] = _err(words, outs["words_emb"])
    errs["rnn_encoder/sent_emb"] = _err(sent, outs["sent_emb"])
    errs.update(_gan_losses(parity_dir, enc))
    for k, v in errs.items():
        print(f"{k:<48} max|diff| = {v:.3g}")
    return errs


def _gan_losses(parity_dir: str, enc) -> dict:
    """errD_i and errG_total of ``e_gan_losses`` (resize align_corners=False, as the fixture)."""
    cfg, w, ins, outs = _load(parity_dir, "e_gan_losses")
    t = torch.from_numpy
    ds = []
    for i, s in enumerate((64, 128, 256)):
        d = tm.D_NET(s, cfg["DF_DIM"], cfg["nef"])
        d.load_state_dict(_sub(w, f"netsD.{i}."), strict=True)
        ds.append(d.train())
    sent = t(ins["sent_emb"])
    errs = {}
    for i, s in enumerate((64, 128, 256)):
        err = tm.discriminator_loss(ds[i], t(ins[f"real_imgs_{s}"]), t(ins[f"fake_imgs_{s}"]), sent)
        errs[f"gan_losses/errD_{i}"] = _err(err, outs[f"errD_{i}"])
    enc.align_corners = False
    fakes = [t(ins[f"fake_imgs_{s}"]) for s in (64, 128, 256)]
    lens = t(ins["cap_lens"])
    labels = torch.arange(len(lens))
    gl = (cfg["GAMMA1"], cfg["GAMMA2"], cfg["GAMMA3"], cfg["LAMBDA"])
    err_g = tm.generator_loss(
        ds, enc, fakes, t(ins["words_embs"]), sent, labels, lens, np.asarray(ins["class_ids"]), gl
    )
    errs["gan_losses/errG_total"] = _err(err_g, outs["errG_total"])
    errs["gan_losses/kl_loss"] = _err(tm.kl_loss(t(ins["mu"]), t(ins["logvar"])), outs["kl_loss"])
    enc.align_corners = True
    return errs
