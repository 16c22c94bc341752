"""Parity runners for the Inception networks: kinds ``cnn_encoder`` and ``inception``.

``cnn_encoder`` (fixture b): ``CNN_ENCODER(nef)`` in eval mode on 299x299 and 256x256 inputs (both
resize conventions), the resize alone, and train mode (batch-statistics BatchNorm).
``inception`` (fixture f): torchvision ``inception_v3`` logits (with and without
``transform_input``) and pytorch-fid ``InceptionV3`` block2/pool3 from the same tensors.

Tolerances follow the fixture README: Inception on a 299 input 5e-4 x max|ref|; anything after a
256 -> 299 bilinear resize 3e-3 x max|ref| (the random-init Inception amplifies the ~1e-6 resize
rounding ~30x); the resize alone atol 5e-5.
"""

from __future__ import annotations

import os

import jax
import numpy as np

from attngan_jax.convert.inception import (
    convert_fid_inception,
    convert_image_encoder,
    convert_torchvision_inception,
)
from attngan_jax.models.image_encoder import CNNEncoder
from attngan_jax.models.inception import FIDInceptionV3, InceptionClassifier
from attngan_jax.models.resize import resize_bilinear
from attngan_jax.parity import Check, nchw, nhwc, register, split_arrays

RTOL_299 = 5e-4  # Inception on a 299x299 input, relative to max |ref|
RTOL_RESIZED = 3e-3  # after a bilinear 256 -> 299 resize
ATOL_RESIZE = 5e-5  # the resize alone


def _source(case: dict, case_dir: str) -> str:
    return os.path.join(case_dir, case.get("file", "<fixture>"))


@register("cnn_encoder")
def run_cnn_encoder(case: dict, arrays: dict, case_dir: str) -> list[Check]:
    """Fixture b: ``CNN_ENCODER`` eval/train outputs and the 256 -> 299 resize alone."""
    weights, inputs, outputs = split_arrays(arrays)
    nef = int(case["case_config"]["nef"])
    enc = {ac: CNNEncoder(nef=nef, align_corners=ac) for ac in (True, False)}
    variables = convert_image_encoder(weights, enc[True], _source(case, case_dir))
    variables = jax.tree_util.tree_map(np.asarray, variables)

    @jax.jit
    def eval_299(v, x):
        return enc[True].apply(v, x, train=False)

    @jax.jit
    def eval_256(v, x):  # the resize runs inside each encoder, as in CNN_ENCODER.forward
        return enc[False].apply(v, x, train=False), enc[True].apply(v, x, train=False)

    @jax.jit
    def train_299(v, x):
        out, _ = enc[True].apply(v, x, train=True, mutable=["batch_stats"])
        return out

    size = (enc[True].image_size,) * 2
    resize = jax.jit(resize_bilinear, static_argnums=(1, 2))

    ours: dict[str, tuple[np.ndarray, float, float]] = {}  # name -> (value, atol, rtol)
    if "imgs" in inputs:
        x = nhwc(inputs["imgs"])
        f, c = eval_299(variables, x)
        ours["features"] = (nchw(f), 0.0, RTOL_299)
        ours["cnn_code"] = (np.asarray(c), 0.0, RTOL_299)
        f, c = train_299(variables, x)
        ours["train_features"] = (nchw(f), 0.0, RTOL_299)
        ours["train_cnn_code"] = (np.asarray(c), 0.0, RTOL_299)
    if "imgs_256" in inputs:
        x = nhwc(inputs["imgs_256"])
        (f0, c0), (f1, c1) = eval_256(variables, x)
        ours["features_256"] = (nchw(f0), 0.0, RTOL_RESIZED)
        ours["cnn_code_256"] = (np.asarray(c0), 0.0, RTOL_RESIZED)
        ours["features_256_align_corners_true"] = (nchw(f1), 0.0, RTOL_RESIZED)
        ours["cnn_code_256_align_corners_true"] = (np.asarray(c1), 0.0, RTOL_RESIZED)
        ours["upsampled_256_to_299"] = (nchw(resize(x, size, False)), ATOL_RESIZE, 0.0)
        ours["upsampled_256_to_299_align_corners_true"] = (
            nchw(resize(x, size, True)),
            ATOL_RESIZE,
            0.0,
        )
    return _checks(ours, outputs, "cnn_encoder")


@register("inception")
def run_inception(case: dict, arrays: dict, case_dir: str) -> list[Check]:
    """Fixture f: torchvision logits (IS) and pytorch-fid block2/pool3 (FID), shared weights."""
    weights, inputs, outputs = split_arrays(arrays)
    src = _source(case, case_dir)
    ours: dict[str, tuple[np.ndarray, float, float]] = {}
    if "imgs" in inputs:
        # torchvision's default 1000 unless the case says otherwise (config, or the listed shape).
        listed = case.get("outputs", {}).get("logits", {}).get("shape", [None, 1000])[-1]
        num_classes = int(case.get("case_config", {}).get("num_classes", listed))
        clf = {
            t: InceptionClassifier(num_classes=num_classes, transform_input=t)
            for t in (False, True)
        }
        v = jax.tree_util.tree_map(
            np.asarray, convert_torchvision_inception(weights, clf[False], src)
        )

        @jax.jit
        def logits(v, x):
            return clf[False].apply(v, x), clf[True].apply(v, x)

        l0, l1 = logits(v, nhwc(inputs["imgs"]))
        ours["logits"] = (np.asarray(l0), 0.0, RTOL_299)
        ours["logits_transform_input"] = (np.asarray(l1), 0.0, RTOL_299)
    if "imgs01_256" in inputs:
        fid = FIDInceptionV3()
        v = jax.tree_util.tree_map(np.asarray, convert_fid_inception(weights, fid, src))
        x = nhwc(inputs["imgs01_256"])
        block2, pool3 = jax.jit(fid.apply)(v, x)
        resized = jax.jit(resize_bilinear, static_argnums=(1, 2))(x, (299, 299), False)
        ours["fid_resized_input"] = (nchw(resized), ATOL_RESIZE, 0.0)
        ours["fid_block2"] = (nchw(block2), 0.0, RTOL_RESIZED)
        ours["fid_pool3"] = (
            np.asarray(pool3)[:, :, None, None],
            0.0,
            RTOL_RESIZED,
        )  # (B, 2048, 1, 1)
    return _checks(ours, outputs, "inception")


def _checks(ours: dict, outputs: dict, kind: str) -> list[Check]:
    """One Check per fixture output; an output this runner does not know is an error."""
    unknown = sorted(set(outputs) - set(ours))
    if unknown:
        raise KeyError(
            f"{kind} runner cannot produce outputs {unknown} (inputs missing or new output)"
        )
    return [
        Check(name, ours[name][0], ref, atol=ours[name][1], rtol=ours[name][2])
        for name, ref in outputs.items()
    ]
