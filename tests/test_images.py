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



def _matplotlib_strip(strip):
    """The original's way: a 10x1-inch figure, one imshow per digit, axes off, 100 dpi."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(len(strip), 1), dpi=100)
    canvas = FigureCanvasAgg(figure)
    for i, image in enumerate(strip):
        ax = figure.add_subplot(1, len(strip), i + 1)
        ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0)
        ax.axis("off")
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., 0].astype(int)


def test_strip_renderer_puts_each_digit_where_matplotlib_draws_it():
    """Same figure layout as the original's matplotlib strip: the digits' boxes coincide and
    blocky digits (whose pixels only differ where matplotlib smooths block edges) match."""
    rng = np.random.default_rng(0)
    black = np.zeros((10, 28, 28))
    ours, theirs = images.StripRenderer(10).render(black) < 128, _matplotlib_strip(black) < 128
    assert (ours & theirs).sum() / (ours | theirs).sum() > 0.95  # boxes overlap (IoU)
    blocky = np.kron(rng.random((10, 7, 7)), np.ones((4, 4)))  # 4x4 blocks of one grey
    difference = np.abs(images.StripRenderer(10).render(blocky) - _matplotlib_strip(blocky))
    assert difference.mean() < 6 and np.mean(difference == 0) > 0.7


def test_strip_renderer_shows_digit_i_in_box_i_and_reuses_nothing_stale():
    renderer = images.StripRenderer(10)
    for lit in (3, 7):
        strip = np.zeros((10, 28, 28))
        strip[lit] = 1.0
        pixels = renderer.render(strip)
        assert pixels.shape == (100, 1000) and pixels.dtype == np.uint8
        box_means = [pixels[ys, xs].mean() for ys, xs, _, _ in renderer.boxes]
        assert box_means[lit] == 255 and sum(box_means) == 255  # only that box is white
    columns = [xs for _, xs, _, _ in renderer.boxes]
    assert all(a.stop <= b.start for a, b in zip(columns, columns[1:]))  # left to right


def test_strip_renderer_shows_nan_as_background_and_clips_out_of_range_values():
    renderer = images.StripRenderer(10)
    strip = np.full((10, 28, 28), 0.5)
    strip[0] = np.nan
    strip[1] = 7.0
    strip[2] = -3.0
    pixels = renderer.render(strip)
    face = pixels[0, 0]
    assert face == 255  # the figure is white outside the digits
    (y0, x0, _, _), (y1, x1, _, _), (y2, x2, _, _), (y3, x3, _, _) = renderer.boxes[:4]
    assert (pixels[y0, x0] == face).all() and (pixels[y1, x1] == 255).all()
    assert (pixels[y2, x2] == 0).all() and (pixels[y3, x3] == 128).all()
    with pytest.raises(ValueError, match="expected 10 images of 28x28"):
        renderer.render(np.zeros((9, 28, 28)))
