"""diffcourse.plot: what is drawn equals the data given (pixel values, arrows, density range)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from diffcourse.plot import plot_density, plot_score_field, show_images  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_show_images_draws_each_image_with_its_pixels_and_title():
    x = torch.rand(2, 1, 5, 7, generator=_gen(), dtype=torch.float64)
    rgb = torch.rand(1, 3, 4, 4, generator=_gen(1)) * 1.5  # values above 1 are clipped
    fig = show_images([x, rgb, torch.ones(3, 3)], ["a", "b", "c", "d"], ncols=3)
    axes = [ax for ax in fig.axes if ax.images]
    assert len(fig.axes) == 4 and len(axes) == 4  # the two empty grid cells were removed
    assert [ax.get_title() for ax in axes] == ["a", "b", "c", "d"]
    np.testing.assert_allclose(axes[1].images[0].get_array(), x[1, 0].float().numpy())
    np.testing.assert_allclose(axes[2].images[0].get_array(),
                               rgb[0].permute(1, 2, 0).clamp(0, 1).numpy())
    assert axes[0].images[0].get_clim() == (0.0, 1.0)


def test_show_images_complex_is_magnitude_and_free_range():
    z = torch.complex(torch.full((1, 1, 3, 3), 3.0), torch.full((1, 1, 3, 3), -4.0))
    fig = show_images(z, vmin=None, vmax=None)
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), np.full((3, 3), 5.0))


@pytest.mark.parametrize("bad, error", [
    (np.zeros((2, 2)), TypeError),
    (torch.zeros(1, 2, 4, 4), ValueError),
    (torch.zeros(1, 1, 1, 4, 4), ValueError),
    (torch.zeros(2, 2, dtype=torch.int64), TypeError),
])
def test_show_images_refuses_bad_input(bad, error):
    with pytest.raises(error, match="images"):
        show_images(bad)


def test_show_images_refuses_wrong_number_of_titles():
    with pytest.raises(ValueError, match="titles"):
        show_images(torch.zeros(2, 1, 3, 3), ["only one"])


def test_score_field_arrows_equal_the_field_at_the_grid_points():
    A = torch.tensor([[-1.0, 0.5], [-0.2, -2.0]], dtype=torch.float64)
    ax = plot_score_field(lambda x: x @ A.T, (-2, 1), (-1, 3), n=4)
    quiver = ax.collections[0]
    xy = torch.from_numpy(np.asarray(quiver.XY))  # (16, 2) arrow positions
    expected = xy @ A.T
    np.testing.assert_allclose(quiver.U, expected[:, 0].numpy())
    np.testing.assert_allclose(quiver.V, expected[:, 1].numpy())
    assert sorted(set(np.round(xy[:, 0].numpy(), 12))) == [-2.0, -1.0, 0.0, 1.0]
    assert ax.get_xlim() == (-2, 1) and ax.get_ylim() == (-1, 3)


def test_score_field_normalized_has_unit_arrows_coloured_by_norm():
    ax = plot_score_field(lambda x: 3 * x, n=5, normalize=True)
    quiver = ax.collections[0]
    norms = np.hypot(quiver.U, quiver.V)
    xy = np.asarray(quiver.XY)
    nonzero = np.hypot(xy[:, 0], xy[:, 1]) > 0
    np.testing.assert_allclose(norms[nonzero], 1.0)
    np.testing.assert_allclose(quiver.get_array(), 3 * np.hypot(xy[:, 0], xy[:, 1]))


def test_score_field_refuses_a_field_of_the_wrong_shape():
    with pytest.raises(ValueError, match="score_fn"):
        plot_score_field(lambda x: x[:, :1], n=3)
    with pytest.raises(ValueError, match="n must"):
        plot_score_field(lambda x: x, n=1)


def test_density_contours_span_the_density():
    ax = plot_density(lambda x: -0.5 * (x ** 2).sum(1) - np.log(2 * np.pi), (-2, 2), (-2, 2), n=41)
    contours = ax.collections[0] if hasattr(ax.collections[0], "zmax") else ax.containers[0]
    assert contours.zmax == pytest.approx(1 / (2 * np.pi))  # at the origin, on the grid
    assert contours.zmin == pytest.approx(np.exp(-4) / (2 * np.pi))  # at the corners


def test_density_refuses_wrong_output_shape():
    with pytest.raises(ValueError, match="log_prob"):
        plot_density(lambda x: x, n=3)


def _overlaps_top_row(fig) -> list[str]:
    """Titles (and images) of the top row that the figure's suptitle is drawn over."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    title = fig._suptitle.get_window_extent(renderer)
    hits = []
    for ax in fig.axes:
        box = ax.get_tightbbox(renderer)  # the axes with its own title
        if box.x1 > title.x0 and box.x0 < title.x1 and box.y1 > title.y0:
            hits.append(ax.get_title() or "an image")
    return hits


@pytest.mark.parametrize("rows", [1, 2, 4])
def test_suptitle_does_not_cover_the_top_row(rows):
    images = torch.rand(4 * rows, 1, 8, 8, generator=_gen())
    titles = [f"image {k}" for k in range(4 * rows)]
    fig = show_images(images, titles, ncols=4, size=1.6, suptitle="rows: clean, noisy, denoised")
    assert fig.get_suptitle() == "rows: clean, noisy, denoised"
    assert _overlaps_top_row(fig) == []
    fig = show_images(images, ncols=4, size=1.6)  # a title added afterwards, as notebooks do
    plt.suptitle("σ = 0.2 — rows: clean, noisy, best-tuned TV, Tweedie denoiser of the prior")
    assert _overlaps_top_row(fig) == []
