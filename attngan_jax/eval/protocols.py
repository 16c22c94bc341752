"""Evaluation protocols: each preset is the whole recipe of one published column, written down.

``eval.py --mode=metrics --protocol=NAME`` (``config.eval.protocol``) picks one; the metrics JSON
holds its recipe (:meth:`Protocol.recipe`) beside the numbers. Read from the reference code
(``docs/evaluation.md`` names the files):

======================  ==========================================  ================================
preset                  recipe                                      published column it reproduces
======================  ==========================================  ================================
``default``             today's ``eval.py`` settings: the network   none exactly (our own numbers;
                        kind decides (``metrics.networks``), round  the JSON says how they were
                        to uint8, ``--batch_size``, no drop_last    made)
``attngan_paper``       IS, CUB: StackGAN's fine-tuned Inception    AttnGAN paper: CUB IS 4.36,
                        (51 logits, background dropped, full        COCO IS 25.89, R-precision
                        batches of 64, PIL resize, ``x/127.5-1``);  67.82 / 85.47 (DM-GAN's
                        COCO: improved-gan (2015 graph, TF1 resize, R-precision code: fold quirk,
                        ``(x-128)/128``, ``pool3 @ W`` without the  99 mismatches, the model's own
                        bias, 1008-way softmax); 30,000 images,     DAMSM)
                        10 splits; R-precision with the model's
                        own DAMSM
``dmgan_pytorch_fid``   DM-GAN ``eval/FID``: PNG truncation to      "Pytorch FID" column of the
                        uint8, PIL bilinear to 299 (uint8), ``u =   DM-GAN README (AttnGAN CUB
                        v/255``, ``u*std/0.5+(mean-0.5)/0.5``,      23.98, COCO 35.49) with its
                        torchvision weights, batch 50 (README       ``bird_val.npz`` /
                        command), drop_last; 30,000 images          ``coco_val.npz``
``ttur_tf_fid``         TTUR ``fid.py``: 0..255 into the 2015       "TF FID" column of the DM-GAN
                        graph = TF1 legacy bilinear to 299,         README (AttnGAN CUB 14.01,
                        ``(v-128)/128``, pytorch-fid's port of the  COCO 29.53)
                        weights (``pt_inception-2015-12-05``),
                        batch 50, drop_last; 30,000 images
``dfgan``               DF-GAN ``test_FID.py``: float images (no    DF-GAN README / GALIP tables
                        quantisation), ``(x+1)/2``, bilinear to     ("PyTorch FID" with
                        299 ``align_corners=False``, DM-GAN's       ``bird_val256_FIDK0.npz``,
                        normalisation, torchvision weights; z =     e.g. DF-GAN CUB 14.81)
                        0.88 x truncnorm(-2, 2); 10 passes over
                        the test set, batches of 32, each pass
                        drops its last partial batch
``fixed_r_precision``   TISE ``RP_cub.py``/``RP_coco.py``: a fixed  TISE's RP (its own column; not
                        saved list of test captions with 99 fixed   comparable with the DAMSM-of-the-
                        mismatches each (seeded), one image per     model R-precision)
                        entry, a *named* DAMSM (``--damsm``), 10
                        folds with DM-GAN's slicing
======================  ==========================================  ================================

What no preset can reproduce: the captions and noise the original scripts drew (torch's RNG,
``os.walk`` order); the statistics of 30,000 images do not depend on them beyond sampling error.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from attngan_jax.errors import InputError
from attngan_jax.metrics.networks import DEFAULT_PIPELINES, Pipeline


@dataclasses.dataclass(frozen=True)
class ISRecipe:
    """How a preset computes the Inception Score.

    Attributes:
        weights: the network kind the preset needs (``stackgan`` | ``fid``).
        pipeline: images -> network input.
        fc_bias: logits ``pool3 @ W + b`` (False: ``pool3 @ W``, improved-gan).
        splits: consecutive parts.
        drop_background: drop logit 0 before the softmax (StackGAN CUB).
        full_batches_of: use only ``floor(N/b)*b`` images (StackGAN's batches of 64).
        source: the reference code.
    """

    weights: str
    pipeline: Pipeline
    fc_bias: bool = True
    splits: int = 10
    drop_background: bool = False
    full_batches_of: int | None = None
    source: str = ""


@dataclasses.dataclass(frozen=True)
class FIDRecipe:
    """How a preset computes FID.

    Attributes:
        weights: the network kind (``torchvision`` | ``fid``).
        pipeline: images -> network input.
        batch_size: the reference script's Inception batch size.
        drop_last: only ``floor(N / batch_size) * batch_size`` images count (in generation order).
        reference: the statistics file the published column used.
        source: the reference code.
    """

    weights: str
    pipeline: Pipeline
    batch_size: int
    drop_last: bool
    reference: str = ""
    source: str = ""


@dataclasses.dataclass(frozen=True)
class RPrecisionRecipe:
    """How a preset computes R-precision.

    Attributes:
        mode: ``model_damsm`` (mismatches drawn per run, the model's own DAMSM) or ``fixed_list``
            (a saved caption list and a named DAMSM, TISE).
        dmgan_fold_quirk: folds ``R[i*L:(i+1)*L-1]`` (DM-GAN, TISE).
        folds: number of folds.
        mismatched: mismatched captions per query.
        source: the reference code.
    """

    mode: str = "model_damsm"
    dmgan_fold_quirk: bool = False
    folds: int = 10
    mismatched: int = 99
    source: str = ""


@dataclasses.dataclass(frozen=True)
class Protocol:
    """An evaluation preset (see the module docstring).

    Attributes:
        name: the ``--protocol`` value.
        columns: the published numbers it reproduces.
        metrics: what it computes by default (``--metrics`` overrides).
        num_images: images to generate (None: one per test record, or ``passes`` full passes).
        passes: full passes over the test split (DF-GAN's ``sample_times``).
        batch_size: generation batch size (None: the caller's ``--batch_size``).
        pass_drop_last: each pass over the test split drops its last partial batch.
        truncation: z truncation (see ``truncation_bound``).
        truncation_bound: z = ``truncation`` x normal truncated to ``[-bound, bound]``.
        is_recipes: per dataset (None: the network kind decides, today's behaviour).
        fid: the FID recipe (None: the network kind decides).
        r_precision: the R-precision recipe.
    """

    name: str
    columns: str
    metrics: tuple[str, ...]
    num_images: int | None = None
    passes: int | None = None
    batch_size: int | None = None
    pass_drop_last: bool = False
    truncation: float | None = None
    truncation_bound: float | None = None
    is_recipes: dict[str, ISRecipe] | None = None
    fid: FIDRecipe | None = None
    r_precision: RPrecisionRecipe = RPrecisionRecipe()

    def is_recipe(self, dataset: str) -> ISRecipe | None:
        """The IS recipe for ``dataset`` (None: today's behaviour, or the preset has none)."""
        return None if self.is_recipes is None else self.is_recipes.get(dataset)

    def recipe(self, dataset: str) -> dict[str, Any]:
        """Everything the preset fixes, for the metrics JSON (the run's values are beside it)."""

        def plain(obj):
            if isinstance(obj, Pipeline):
                return obj.describe()
            if dataclasses.is_dataclass(obj):
                return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
            return obj

        out = {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}
        out.pop("is_recipes")
        out["metrics"] = list(self.metrics)
        if self.is_recipes is not None:
            rec = self.is_recipe(dataset)
            out["is"] = plain(rec) if rec else f"no published IS protocol for {dataset!r}"
        return out


WEIGHTS = {
    "torchvision": "torchvision inception_v3_google-*.pth, 1000 classes",
    "fid": "pytorch-fid pt_inception-2015-12-05-6726825d.pth, 1008 classes",
    "stackgan": "StackGAN inception_finetuned_models/birds_valid299/model.ckpt, 51 logits",
}

_DMGAN = "MinfengZhu/DM-GAN eval/FID/fid_score.py + inception.py, README command --batch-size 50"
_TTUR = "bioinf-jku/TTUR fid.py (get_activations: batch 50, drops the last partial batch)"
_IMPROVED_GAN = "openai/improved-gan inception_score/model.py (softmax of pool_3 @ W, no bias)"
_STACKGAN = "hanzhanggit/StackGAN-inception-model inception_score.py (copy: DM-GAN eval/IS/bird)"
_DFGAN = "tobran/DF-GAN code/lib/modules.py:eval, cfg/bird.yml (sample_times 10, trunc 0.88)"

DMGAN_FID_PIPELINE = Pipeline(
    quantise="truncate", pil_resize=True, scale="imagenet_on_unit", float_resize="none"
)
TF_GRAPH_PIPELINE = Pipeline(
    quantise="truncate", pil_resize=False, scale="tf_graph", float_resize="tf1"
)
DFGAN_FID_PIPELINE = Pipeline(
    quantise="none", pil_resize=False, scale="imagenet_on_unit", float_resize="half_pixel"
)
STACKGAN_IS_PIPELINE = dataclasses.replace(DEFAULT_PIPELINES["stackgan"], quantise="truncate")

PRESETS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol(
            name="default",
            columns="none exactly: today's settings, the network kind decides (docs/evaluation.md)",
            metrics=("is", "fid", "r_precision", "caption_fidelity", "attention_localisation"),
        ),
        Protocol(
            name="attngan_paper",
            columns="AttnGAN paper: IS CUB 4.36 / COCO 25.89, R-precision 67.82 / 85.47",
            metrics=("is", "r_precision"),
            num_images=30000,
            is_recipes={
                "birds": ISRecipe(
                    weights="stackgan",
                    pipeline=STACKGAN_IS_PIPELINE,
                    fc_bias=True,
                    drop_background=True,
                    full_batches_of=64,
                    source=_STACKGAN,
                ),
                "coco": ISRecipe(
                    weights="fid", pipeline=TF_GRAPH_PIPELINE, fc_bias=False, source=_IMPROVED_GAN
                ),
            },
            r_precision=RPrecisionRecipe(
                mode="model_damsm",
                dmgan_fold_quirk=True,
                source="MinfengZhu/DM-GAN code/trainer.py:sampling + datasets.get_mis_caption",
            ),
        ),
        Protocol(
            name="dmgan_pytorch_fid",
            columns="DM-GAN README 'Pytorch FID' (AttnGAN CUB 23.98, COCO 35.49)",
            metrics=("fid",),
            num_images=30000,
            fid=FIDRecipe(
                weights="torchvision",
                pipeline=DMGAN_FID_PIPELINE,
                batch_size=50,
                drop_last=True,
                reference="DM-GAN eval/FID/bird_val.npz or coco_val.npz",
                source=_DMGAN,
            ),
        ),
        Protocol(
            name="ttur_tf_fid",
            columns="DM-GAN README 'TF FID' (AttnGAN CUB 14.01, COCO 29.53)",
            metrics=("fid",),
            num_images=30000,
            fid=FIDRecipe(
                weights="fid",
                pipeline=TF_GRAPH_PIPELINE,
                batch_size=50,
                drop_last=True,
                reference="real test images through the same recipe (TTUR precalc_stats)",
                source=_TTUR,
            ),
        ),
        Protocol(
            name="dfgan",
            columns="DF-GAN / GALIP 'FID' (CUB: DF-GAN 14.81 paper, 12.10 released)",
            metrics=("fid",),
            passes=10,
            batch_size=32,
            pass_drop_last=True,
            truncation=0.88,
            truncation_bound=2.0,
            fid=FIDRecipe(
                weights="torchvision",
                pipeline=DFGAN_FID_PIPELINE,
                batch_size=32,
                drop_last=False,
                reference="DF-GAN data/<ds>/npz/bird_val256_FIDK0.npz",
                source=_DFGAN,
            ),
        ),
        Protocol(
            name="fixed_r_precision",
            columns="TISE RP (VinAIResearch/tise-toolbox text_relevance/RP_cub.py)",
            metrics=("r_precision",),
            num_images=30000,
            r_precision=RPrecisionRecipe(
                mode="fixed_list",
                dmgan_fold_quirk=True,
                source="VinAIResearch/tise-toolbox text_relevance/RP_cub.py, RP_coco.py",
            ),
        ),
    )
}


def get(name: str | None) -> Protocol:
    """The preset called ``name`` (``None``/``""``: ``default``).

    Raises:
        InputError: no such preset (the message lists them).
    """
    name = name or "default"
    if name not in PRESETS:
        raise InputError(f"--protocol={name}: use one of {', '.join(PRESETS)}")
    return PRESETS[name]
