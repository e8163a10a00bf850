import numpy as np
import pytest
from PIL import Image

from gan import images


def test_grid_places_each_image_row_by_row_with_padding():
    tiles = np.stack([np.full((28, 28), i + 1, np.uint8) for i in range(5)])
    out = images.grid(tiles, padding=2)  # 5 images -> 3 columns, 2 rows
    assert out.shape == (2 * 30 + 2, 3 * 30 + 2)
    assert out.dtype == np.uint8
    for i in range(5):
        r, c = divmod(i, 3)
        y, x = 2 + 30 * r, 2 + 30 * c
        assert (out[y:y + 28, x:x + 28] == i + 1).all()
    assert out[:2].max() == 0 and out[30:32].max() == 0  # padding rows
    assert out[32:, 62:].max() == 0  # the empty sixth cell


def test_grid_columns_and_no_padding():
    out = images.grid(np.ones((10, 28, 28), np.float32), cols=10, padding=0)
    assert out.shape == (28, 280) and out.min() == 1.0


def test_gif_has_one_frame_per_image_in_order(tmp_path):
    paths = []
    for i in range(4):
        path = tmp_path / f"generated_{i * 100}.png"
        images.save_png(np.full((10, 40), 60 * i, np.uint8), path)
        paths.append(str(path))
    out = tmp_path / "progress.gif"
    images.save_gif(paths, str(out))
    with Image.open(out) as gif:
        assert gif.n_frames == 4
        values = []
        for i in range(4):
            gif.seek(i)
            values.append(np.asarray(gif.convert("L"))[5, 5])
    assert values == [0, 60, 120, 180]


def test_gif_of_nothing_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no images"):
        images.save_gif([], str(tmp_path / "x.gif"))


def test_list_strips_sorts_by_epoch_and_ignores_other_files(tmp_path):
    for name in ("generated_900.png", "generated_1000.png", "generated_0.png", "losses.png",
                 ".tmp-abc.png", "generated_5.png.bak"):
        (tmp_path / name).write_bytes(b"")
    assert [e for e, _ in images.list_strips(str(tmp_path))] == [0, 900, 1000]
    assert images.list_strips(str(tmp_path / "missing")) == []



def _strips_of_every_kind(rng):
    """Random, binary, constant, out-of-range, colormap-boundary (k/256 and just above),
    saturated-sigmoid float32 and NaN strips."""
    levels = rng.integers(0, 257, (10, 28, 28)) / 256
    with_nan = rng.random((10, 28, 28))
    with_nan[3, 5:20, 5:20] = np.nan
    return [rng.random((10, 28, 28)), (rng.random((10, 28, 28)) > 0.5) * 1.0,
            np.full((10, 28, 28), 0.3), rng.random((10, 28, 28)) * 1.6 - 0.3,
            levels.astype(np.float32), np.nextafter(levels, 2).astype(np.float32),
            (1 / (1 + np.exp(-rng.normal(0, 8, (10, 28, 28))))).astype(np.float32),
            with_nan, rng.random((10, 28, 28)).astype(np.float32), np.zeros((10, 28, 28))]


def _count_artist_draws(monkeypatch):
    from matplotlib.image import AxesImage

    calls = []
    draw = AxesImage.draw
    monkeypatch.setattr(AxesImage, "draw", lambda self, r: calls.append(1) or draw(self, r))
    return calls


def test_strip_renderer_redraws_the_same_pixels_as_a_fresh_full_draw(monkeypatch):
    """After its first strip a renderer only redraws the digits over the last ones, and
    after its second without going through the artists; each strip must still equal a new
    renderer's full draw. NaN pixels are drawn transparent, so the background shows."""
    rng = np.random.default_rng(0)
    reused = images.StripRenderer(10)
    strips = _strips_of_every_kind(rng)
    fresh = [images.StripRenderer(10).render(strip) for strip in strips]
    draws = _count_artist_draws(monkeypatch)
    for i, strip in enumerate(strips):
        pixels = reused.render(strip)
        assert pixels.shape == (100, 1000)
        np.testing.assert_array_equal(pixels, fresh[i], err_msg=f"strip {i}")
    # through the artists: the full draws (first strip, NaN strip) and the check of the
    # short way (two probe strips); not the eight other strips
    assert len(draws) == 4 * 10
    assert not np.array_equal(reused.render(strips[0]), reused.render(strips[1]))


def _draws_nothing(self, images, renderer):
    pass


def _fails(self, images, renderer):
    raise AttributeError("module 'matplotlib.image' has no attribute '_resample'")


@pytest.mark.parametrize("short_way", [_draws_nothing, _fails])
def test_strip_renderer_keeps_the_artists_way_if_the_short_way_disagrees(monkeypatch,
                                                                          short_way):
    """If the short way's probe strip differs from the artists' draw, or it fails (another
    matplotlib, say), every later strip is drawn by the artists, with the right pixels."""
    monkeypatch.setattr(images.StripRenderer, "_draw_digits", short_way)
    rng = np.random.default_rng(1)
    reused = images.StripRenderer(10)
    strips = [rng.random((10, 28, 28)) for _ in range(4)]
    fresh = [images.StripRenderer(10).render(strip) for strip in strips]
    draws = _count_artist_draws(monkeypatch)
    for strip, expected in zip(strips, fresh):
        np.testing.assert_array_equal(reused.render(strip), expected)
    assert len(draws) == 10 + 2 * 10 + 3 * 10  # first strip, the check, three strips
