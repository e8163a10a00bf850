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



def test_strip_renderer_redraws_the_same_pixels_as_a_fresh_full_draw():
    """After its first strip a renderer only redraws the digits over the last ones; each
    strip must still equal a new renderer's full draw: random, binary, constant and
    out-of-range digits, and NaN pixels (drawn transparent, so the background shows)."""
    rng = np.random.default_rng(0)
    reused = images.StripRenderer(10)
    strips = [rng.random((10, 28, 28)), (rng.random((10, 28, 28)) > 0.5) * 1.0,
              np.full((10, 28, 28), 0.3), rng.random((10, 28, 28)) * 1.6 - 0.3]
    with_nan = rng.random((10, 28, 28))
    with_nan[3, 5:20, 5:20] = np.nan
    strips += [with_nan, rng.random((10, 28, 28)), np.zeros((10, 28, 28))]
    for i, strip in enumerate(strips):
        fresh = images.StripRenderer(10).render(strip)
        assert fresh.shape == (100, 1000)
        np.testing.assert_array_equal(reused.render(strip), fresh, err_msg=f"strip {i}")
    assert not np.array_equal(reused.render(strips[0]), reused.render(strips[1]))
