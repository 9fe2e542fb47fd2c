import numpy as np
import pytest

from pipeline.detection.tiling import blend_weights, tile_grid


@pytest.mark.parametrize(("h", "w", "size", "overlap"), [(576, 576, 256, 32), (300, 257, 128, 16), (50, 70, 256, 32)])
def test_tiles_cover_every_pixel_and_stay_inside(h, w, size, overlap):
    cover = np.zeros((h, w), dtype=int)
    for t in tile_grid(h, w, size, overlap):
        assert t.row + t.height <= h and t.col + t.width <= w
        cover[t.slices] += 1
    assert cover.min() >= 1


def test_blending_a_constant_gives_the_constant_without_seams():
    h, w, size, overlap = 300, 280, 128, 24
    acc = np.zeros((h, w))
    wsum = np.zeros((h, w))
    for t in tile_grid(h, w, size, overlap):
        wt = blend_weights(t, h, w, overlap)
        assert (wt > 0).all()
        acc[t.slices] += 3.0 * wt
        wsum[t.slices] += wt
    np.testing.assert_allclose(acc / wsum, 3.0, rtol=1e-6)


def test_border_pixels_are_not_tapered():
    tiles = tile_grid(300, 300, 128, 32)
    first = tiles[0]
    w = blend_weights(first, 300, 300, 32)
    assert w[0, 0] == 1.0 and w[0, 64] == 1.0
    assert w[-1, 64] < 0.1  # interior edge tapers
