"""to_uint8, image_grid, atomic save_png, top-word selection and the super-image layout."""

import os

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from attngan_jax.visualize import (
    HEADER,
    image_grid,
    save_png,
    super_image,
    to_uint8,
    top_attended_words,
)


def test_to_uint8_rounds_and_clips():
    x = np.array([-1.0, 0.0, 1.0, -2.0, 2.0, np.nan, 0.999, -0.9961])
    np.testing.assert_array_equal(to_uint8(x), [0, 128, 255, 0, 255, 0, 255, 0])
    assert to_uint8(jnp.zeros((2, 3, 3))).dtype == np.uint8


def test_image_grid_places_images_row_major():
    imgs = np.arange(5 * 4 * 6 * 3, dtype=np.uint8).reshape(5, 4, 6, 3)
    g = image_grid(imgs, ncols=2, pad=2, pad_value=7)
    assert g.shape == (3 * 6 + 2, 2 * 8 + 2, 3) and g.dtype == np.uint8
    np.testing.assert_array_equal(g[8:12, 2:8], imgs[2])  # row 1, col 0
    np.testing.assert_array_equal(g[8:12, 10:16], imgs[3])  # row 1, col 1
    assert (g[14:18, 10:16] == 7).all()  # missing 6th cell
    assert (g[:2] == 7).all() and (g[:, :2] == 7).all()


def test_save_png_round_trip_and_atomic_replace(tmp_path):
    path = tmp_path / "sub" / "img.png"
    a = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    save_png(path, a)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), a)
    b = 255 - a
    save_png(path, b)  # overwrite
    np.testing.assert_array_equal(np.asarray(Image.open(path)), b)
    with pytest.raises(Exception):  # noqa: B017  (PIL cannot encode 5 channels)
        save_png(path, np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        save_png(path, a.astype(np.float32))
    np.testing.assert_array_equal(np.asarray(Image.open(path)), b)  # old file intact
    assert os.listdir(path.parent) == ["img.png"]  # no temporary files left


def test_top_attended_words_ignores_padding():
    attn = np.zeros((6, 4, 4))
    for t, m in {0: 6.0, 1: 3.0, 2: 10.0, 3: 1.0, 5: 100.0}.items():
        attn[t, 0, 0] = m
    assert top_attended_words(attn, num_words=4, k=3) == [2, 0, 1]
    assert top_attended_words(attn, num_words=2, k=5) == [0, 1]


def quadrant_map(h, w, quadrant, mass):
    """(h, w) map with all `mass` uniform in one quadrant: 0=TL, 1=TR, 2=BL, 3=BR."""
    m = np.zeros((h, w), np.float32)
    r, c = divmod(quadrant, 2)
    m[r * h // 2 : (r + 1) * h // 2, c * w // 2 : (c + 1) * w // 2] = mass / (h * w / 4)
    return m


def quadrant_means(tile):
    h, w = tile.shape[:2]
    return [
        tile[r * h // 2 : (r + 1) * h // 2, c * w // 2 : (c + 1) * w // 2].mean()
        for r in range(2)
        for c in range(2)
    ]


def test_super_image_layout_order_and_labels():
    B, T, top_k = 3, 6, 3
    gray = [np.full((B, s, s, 3), -0.2, np.float32) for s in (8, 16, 32)]
    gray[0][0] = 0.5  # stage 0 of sample 0: flat colour, any interpolation keeps it
    gray[2][0, 3:7, 5:9] = 1.0  # largest stage: not resized, pixel-exact
    words = [["a", "small", "red", "bird"], ["tiny", "cat"], list("abcde")]
    attn1 = np.zeros((B, T, 8, 8), np.float32)
    # Sample 0: masses word2=10 (TL), word0=6 (BR), word1=3 (TR), word3=1; padding word 5 has
    # 100 (BL) and must never be shown.
    for t, (q, m) in {2: (0, 10.0), 0: (3, 6.0), 1: (1, 3.0), 3: (2, 1.0), 5: (2, 100.0)}.items():
        attn1[0, t] = quadrant_map(8, 8, q, m)
    attn1[1, :2] = 1.0 / 64
    attn2 = jnp.full((B, T, 16, 16), 1.0 / 256)  # jax input works too
    out = super_image(gray, [attn1, attn2], words, top_k=top_k, max_samples=2)

    tile, row_h, ncols = 32, HEADER + 32 + 2, 3 + 2 * top_k
    assert out.shape == (2 * row_h + 2, ncols * (tile + 2) + 2, 3) and out.dtype == np.uint8

    def cell(b, c):
        y, x = 2 + b * row_h, 2 + c * (tile + 2)
        return out[y : y + HEADER], out[y + HEADER : y + HEADER + tile, x : x + tile]

    def header(b, c):
        return cell(b, c)[0][:, 2 + c * (tile + 2) : 2 + c * (tile + 2) + tile]

    assert (cell(0, 0)[1] == to_uint8(0.5)).all()
    np.testing.assert_array_equal(cell(0, 2)[1], to_uint8(gray[2][0]))
    # Stage-1 attention tiles of sample 0: ordered by mass (TL, BR, TR hot), padding skipped.
    for c, hot_q in zip(range(3, 6), [0, 3, 1]):
        means = quadrant_means(cell(0, c)[1].astype(np.float32))
        assert int(np.argmax(means)) == hot_q, (c, means)
        assert max(means) > min(means) + 20
    # Every shown tile has a label; sample 1 has only 2 words, so its 3rd tile is blank.
    for c in range(ncols):
        assert header(0, c).any(), c
    assert header(1, 4).any() and not header(1, 5).any() and not cell(1, 5)[1].any()


def test_super_image_rejects_bad_inputs():
    imgs = [np.zeros((1, 8, 8, 3)), np.zeros((1, 16, 16, 3))]
    with pytest.raises(ValueError, match="words but T"):
        super_image(imgs, [np.ones((1, 2, 8, 8))], [["a", "b", "c"]])
    with pytest.raises(ValueError, match="attention maps"):
        super_image(imgs, [np.ones((1, 2, 8, 8))] * 2, [["a"]])
