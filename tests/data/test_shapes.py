"""Captioned-shapes source and its caption-fidelity oracle."""

import hashlib
import time

import numpy as np
import pytest

from attngan_jax.data import shapes as S
from attngan_jax.data.shapes import oracle as O


@pytest.fixture(scope="module")
def test_set():
    """200 test images at 64x64 with their captions and scenes."""
    src = S.ShapesSource(num_train=10, num_test=200, image_size=64, captions_per_image=5, seed=3)
    exs = list(src.examples("test"))
    caps = [src.caption_texts("test", i) for i in range(200)]
    scenes = [src.scene("test", i) for i in range(200)]
    return src, exs, caps, scenes


def _digest(image):
    return hashlib.sha1(image.tobytes()).hexdigest()


def test_deterministic_from_seed():
    a = S.ShapesSource(num_train=6, num_test=4, seed=5)
    b = S.ShapesSource(num_train=6, num_test=4, seed=5)
    c = S.ShapesSource(num_train=6, num_test=4, seed=6)
    for split in ("train", "test"):
        ea, eb, ec = (list(s.examples(split)) for s in (a, b, c))
        for x, y in zip(ea, eb):
            assert x.key == y.key and x.class_id == y.class_id and x.captions == y.captions
            np.testing.assert_array_equal(x.image, y.image)
        assert all(not np.array_equal(x.image, z.image) for x, z in zip(ea, ec))
        assert [x.captions for x in ea] != [z.captions for z in ec]
    # Random access equals iteration order.
    np.testing.assert_array_equal(a.example("train", 3).image, list(a.examples("train"))[3].image)


def test_train_test_disjoint():
    src = S.ShapesSource(num_train=300, num_test=200, seed=0)
    train = {_digest(e.image) for e in src.examples("train")}
    test = {_digest(e.image) for e in src.examples("test")}
    assert len(train) == 300 and len(test) == 200  # no duplicates inside a split either
    assert not train & test
    train_scenes = {src.scene("train", i).objects for i in range(300)}
    assert not train_scenes & {src.scene("test", i).objects for i in range(200)}


def test_holdout_only_in_test():
    src = S.ShapesSource(num_train=400, num_test=300, seed=1)
    assert src.holdout == S.DEFAULT_HOLDOUT
    train_kinds = {(o.colour, o.shape) for i in range(400) for o in src.scene("train", i).objects}
    assert not train_kinds & S.DEFAULT_HOLDOUT
    assert len(train_kinds) == 18 - len(S.DEFAULT_HOLDOUT)  # everything else is seen
    held = [i for i in range(300) if src.is_heldout("test", i)]
    assert len(held) > 10
    test_kinds = {(o.colour, o.shape) for i in held for o in src.scene("test", i).objects}
    assert S.DEFAULT_HOLDOUT <= test_kinds
    assert not any(src.is_heldout("train", i) for i in range(400))
    custom = S.ShapesSource(num_train=200, num_test=0, holdout={("red", "circle")})
    kinds = {(o.colour, o.shape) for i in range(200) for o in custom.scene("train", i).objects}
    assert ("red", "circle") not in kinds and ("purple", "triangle") in kinds
    with pytest.raises(ValueError):
        S.ShapesSource(holdout={("pink", "circle")})


def test_scene_geometry():
    rng = np.random.default_rng(0)
    for _ in range(500):
        scene = S.sample_scene(rng)
        for o in scene.objects:
            x0, y0, x1, y1 = o.bbox()
            assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
        if len(scene.objects) == 1:
            assert scene.position in S.POSITIONS and scene.relation is None
            continue
        a, b = scene.objects
        assert a.colour != b.colour and scene.relation in S.RELATIONS
        ba, bb = a.bbox(), b.bbox()
        gap = {
            "left": bb[0] - ba[2],
            "right": ba[0] - bb[2],
            "above": bb[1] - ba[3],
            "below": ba[1] - bb[3],
        }[scene.relation]
        assert gap > 0  # separated along the relation's axis, hence never overlapping


def test_render_consistent_across_sizes():
    rng = np.random.default_rng(2)
    for _ in range(8):
        scene = S.sample_scene(rng)
        small = S.render(scene, 64).astype(np.float64)
        for big_size in (128, 256):
            big = S.render(scene, big_size)
            assert big.shape == (big_size, big_size, 3) and big.dtype == np.uint8
            f = big_size // 64
            down = big.reshape(64, f, 64, f, 3).mean(axis=(1, 3))  # box downscale to 64
            diff = np.abs(down - small)
            assert diff.mean() < 1.0, diff.mean()
            assert np.percentile(diff, 99) < 25.0
        # Object centres show the palette colour; corners are unsaturated background.
        img = S.render(scene, 128, 0)
        for o in scene.objects:
            px = img[int(o.center[1] * 128), int(o.center[0] * 128)].astype(int)
            assert np.abs(px - np.array(S.PALETTE[o.colour])).max() <= 8
        corners = img[[0, 0, -1, -1], [0, -1, 0, -1]].astype(int)
        assert (corners.max(axis=1) - corners.min(axis=1)).max() < 25
        assert corners.min() > 170


def _expected_relation(scene, colour_a, colour_b):
    """Relation of the object with colour_a to the one with colour_b in ``scene``."""
    assert {colour_a, colour_b} == {o.colour for o in scene.objects}
    rel = scene.relation
    return rel if scene.objects[0].colour == colour_a else S.INVERSE_RELATION[rel]


def _assert_facts(spec, scene, text, with_position):
    by_colour = {o.colour: o for o in scene.objects}
    assert len(spec.objects) == len(scene.objects), text
    assert sorted(spec.colours()) == sorted(by_colour), text
    for o in spec.objects:
        truth = by_colour[o.colour]
        assert o.shape == truth.shape and o.size in (None, truth.size), text
    if len(scene.objects) == 1:
        assert spec.position == (scene.position if with_position else None), text
        return
    if not with_position:
        assert spec.relation is None, text
        return
    a, b = spec.objects[0].colour, spec.objects[1].colour
    assert spec.relation == _expected_relation(scene, a, b), text
    side = {"left": ("left", "right"), "right": ("right", "left")}
    side |= {"above": ("top", "bottom"), "below": ("bottom", "top")}
    for o, expected in zip(spec.objects, side[spec.relation]):
        assert o.position in (None, expected), text


def test_every_template_parses_back():
    rng = np.random.default_rng(4)
    vocab = S.ShapesSource().vocabulary()
    assert vocab.ixtoword == S.IXTOWORD and vocab.ixtoword[0] == "<end>"
    assert S.IXTOWORD[1:] == sorted(S.IXTOWORD[1:])
    n = 0
    for _ in range(120):
        scene = S.sample_scene(rng)
        table = S.SINGLE_TEMPLATES if len(scene.objects) == 1 else S.PAIR_TEMPLATES
        for k in range(len(table)):
            text = S.make_caption(scene, rng, template=k)
            tokens = S.tokenize(text)
            assert len(tokens) <= S.MAX_CAPTION_WORDS, text
            ids = vocab.encode(tokens, unknown="error")
            assert ids == S.encode_caption(text) and vocab.decode(ids) == " ".join(tokens)
            with_position = k != len(table) - 1  # the last template states no position
            _assert_facts(S.parse_caption(text), scene, text, with_position)
            n += 1
    assert n >= 120 * 9


def test_parse_user_captions():
    spec = S.parse_caption("A red circle on the left.")
    assert [(o.colour, o.shape, o.position) for o in spec.objects] == [("red", "circle", "left")]
    spec = S.parse_caption("a big blue box underneath a green ball")
    assert [(o.colour, o.shape, o.size) for o in spec.objects] == [
        ("blue", "square", "large"),
        ("green", "circle", None),
    ]
    assert spec.relation == "below"
    spec = S.parse_caption("in the middle there is a yellow triangle")
    assert spec.position == "center" and spec.colours() == ["yellow"]
    spec = S.parse_caption("a green one and the red one is on top of the green one")
    assert spec.colours() == ["red", "green"] and spec.relation == "above"
    spec = S.parse_caption("a bird with a long beak")
    assert spec.objects == [] and spec.relation is None
    spec = S.parse_caption("a purple thing somewhere")
    assert spec.colours() == ["purple"] and spec.position is None


def test_examples_contract():
    src = S.ShapesSource(num_train=30, num_test=5, image_size=128, captions_per_image=7, seed=2)
    assert src.name == "shapes" and src.splits() == ["train", "test"]
    assert src.num_examples("train") == 30 and src.num_examples("test") == 5
    vocab = src.vocabulary()
    for i, ex in enumerate(src.examples("train")):
        assert ex.key == f"train/{i:06d}"
        assert ex.image.shape == (128, 128, 3) and ex.image.dtype == np.uint8
        texts = src.caption_texts("train", i)
        assert len(ex.captions) == 7 and len(set(texts)) == 7
        assert [vocab.decode(c) for c in ex.captions] == [" ".join(S.tokenize(t)) for t in texts]
        first = src.scene("train", i).objects[0]
        assert 0 <= ex.class_id < S.NUM_CLASSES
        assert ex.class_id == S.class_id(first.colour, first.shape)
    assert len({S.class_id(c, s) for c in S.COLOURS for s in S.SHAPES}) == 18
    with pytest.raises(IndexError):
        src.scene("train", 30)


def test_oracle_ground_truth_near_perfect(test_set):
    _, exs, caps, _ = test_set
    images = [e.image for e in exs for _ in range(5)]
    result = O.score(images, [c for cs in caps for c in cs])
    print("oracle on ground truth:", result)
    for criterion in O.CRITERIA:
        assert result[criterion] >= 0.97, result
        assert result["n_" + criterion] >= 300
    # Float images in [-1, 1] at another size give the same verdicts.
    floats = [S.render(s, 96).astype(np.float32) / 127.5 - 1 for s in test_set[3][:40]]
    result = O.score(floats, [c[0] for c in caps[:40]])
    assert all(result[c] >= 0.97 for c in O.CRITERIA if result["n_" + c]), result


def test_oracle_mismatched_captions_near_chance(test_set):
    _, exs, caps, scenes = test_set
    rng = np.random.default_rng(0)
    images, texts = [], []
    for i, ex in enumerate(exs):
        for j in rng.choice(len(exs), 3, replace=False):
            if scenes[j] != scenes[i]:
                images.append(ex.image)
                texts.append(caps[j][rng.integers(5)])
    result = O.score(images, texts)
    print("oracle on mismatched captions:", result)
    assert 0.05 <= result["colour_single"] <= 0.3, result
    assert result["position"] < 0.25, result
    assert result["both_colours"] < 0.2, result


def test_oracle_sees_flips(test_set):
    """Mirroring the image left-right breaks every horizontal fact and no colour fact."""
    _, exs, caps, _ = test_set
    images, texts = [], []
    for ex, cs in zip(exs, caps):
        for text in cs:
            spec = S.parse_caption(text)
            horizontal = spec.relation in ("left", "right") or spec.position in ("left", "right")
            if horizontal:
                images.append(ex.image[:, ::-1])
                texts.append(spec)
    result = O.score(images, texts)
    assert result["n_position"] > 100 and result["position"] <= 0.03, result
    assert result["both_colours"] >= 0.97 and result["colour_single"] >= 0.97, result


def test_render_speed():
    rng = np.random.default_rng(0)
    scenes = [S.sample_scene(rng) for _ in range(256)]
    start = time.perf_counter()
    images = [S.render(s, 64, i) for i, s in enumerate(scenes)]
    elapsed = time.perf_counter() - start
    print(f"rendered 256 images at 64x64 in {elapsed:.3f} s")
    assert len(images) == 256


def _blurred(image, sigma):
    from scipy import ndimage

    if not sigma:
        return image
    out = np.stack([ndimage.gaussian_filter(image[..., c].astype(float), sigma) for c in range(3)])
    return np.clip(np.rint(np.moveaxis(out, 0, -1)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("size", [16, 32, 64])
def test_oracle_shapes_and_counts_on_renders(size):
    """Calibration (docs/shapes_demo.md): the dataset's own renders, sharp and blurred.

    Every object's shape and the object count are right on every render at 32 and 64 px up to a
    1-px Gaussian blur, and at 16 px up to 0.5 px (at 16 px a 1-px blur leaves small objects a
    few blurred pixels: ~0.7 of their shapes and ~0.99 of the counts are read right).
    """
    src = S.ShapesSource(num_train=1, num_test=80, image_size=64, seed=4)
    for sigma in (0.0, 0.5, 1.0):
        shapes_ok = shapes_n = counts_ok = 0
        for i in range(80):
            scene = src.scene("test", i)
            objs = O.detect_objects(_blurred(S.render(scene, size, i), sigma))
            counts_ok += len(objs) == len(scene.objects)
            for ob in scene.objects:
                match = [o for o in objs if o.colour == ob.colour]
                shapes_ok += bool(match) and match[0].shape == ob.shape
                shapes_n += 1
        if size >= 32 or sigma <= 0.5:
            assert counts_ok == 80, (size, sigma, counts_ok)
            assert shapes_ok == shapes_n, (size, sigma, shapes_ok, shapes_n)
        else:
            assert counts_ok >= 77, (size, sigma, counts_ok)
            assert shapes_ok >= 0.55 * shapes_n, (size, sigma, shapes_ok, shapes_n)


def test_oracle_sees_wrong_shapes_and_extra_objects(test_set):
    """Captions naming another shape fail shape_single; an object drawn twice fails the count."""
    _, exs, caps, scenes = test_set
    images, texts, doubled = [], [], []
    for ex, scene in zip(exs, scenes):
        if len(scene.objects) != 1:
            continue
        obj = scene.objects[0]
        other = S.SHAPES[(S.SHAPES.index(obj.shape) + 1) % 3]
        images.append(ex.image)
        texts.append(f"a {obj.colour} {other}")
        # The same object twice, side by side.
        twins = tuple(
            S.ShapeObject(obj.colour, obj.shape, obj.size, (x, 0.5)) for x in (0.25, 0.75)
        )
        doubled.append(S.render(S.Scene(twins, relation="left", background=scene.background), 64))
    wrong = O.score(images, texts)
    assert wrong["n_shape_single"] > 80 and wrong["shape_single"] <= 0.02, wrong
    assert wrong["colour_single"] >= 0.97 and wrong["count_single"] >= 0.97, wrong
    twice = O.score(
        doubled, [f"a {s.objects[0].colour} shape" for s in scenes if len(s.objects) == 1]
    )
    assert twice["count_single"] <= 0.1, twice


def test_attention_localisation():
    """A map on the object scores ~1, a uniform map the object's area, a map elsewhere ~0."""
    obj = S.ShapeObject("red", "square", "large", (0.25, 0.5))
    image = S.render(S.Scene((obj,), position="left"), 32)
    words = ["a", "red", "square", "on", "the", "left"]
    region = O.detect_objects(image)[0].mask.reshape(16, 2, 16, 2).mean(axis=(1, 3))
    on = np.zeros((6, 16, 16))
    on[1] = on[2] = region >= 1.0  # the cells wholly inside the object
    res = O.attention_localisation(on, words, image)
    assert [k for k, _, _ in res] == ["colour", "shape"]
    for _, inside, area in res:
        assert inside == pytest.approx(1.0) and area == pytest.approx(region.mean())
    uniform = O.attention_localisation(np.ones((6, 16, 16)), words, image)
    assert all(inside == pytest.approx(area) for _, inside, area in uniform)
    elsewhere = np.zeros((6, 16, 16))
    elsewhere[:, :, 12:] = 1.0
    assert all(inside < 0.01 for _, inside, _ in O.attention_localisation(elsewhere, words, image))
    # An object the image lacks is not scored.
    assert O.attention_localisation(on, ["a", "blue", "circle"], image) == []
