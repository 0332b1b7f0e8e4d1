"""The figures logged to MLflow with each run: its weights as images (a sweep's
curves are drawn by ``drawing.sweep_figure``; each run's own per-epoch metrics
are charted by MLflow's UI itself).

The weight images are drawn pixel by pixel with Pillow (matplotlib's colour map,
no figure machinery): a run of a sweep pays milliseconds for them, not the
tenths of a second a matplotlib figure costs to lay out and render.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..core.models import LinearModel

WEIGHT_COLORS = "RdBu_r"  # diverging, centred on zero: red for, blue against
WHITE, BLACK = (255, 255, 255), (0, 0, 0)
SIDE_PX = 224  # the smallest side of a weight image: readable in the artifact viewer


def weight_images(model: LinearModel) -> np.ndarray:
    """The weights as (k, side, side) images: one per class, one for logistic."""
    n_features, k = model.weights.shape
    side = math.isqrt(n_features)
    return model.weights.T.reshape(k, side, side)


def _colours(values: np.ndarray, limit: float) -> np.ndarray:
    """RGB bytes of ``values`` on the diverging map, -limit blue to +limit red."""
    import matplotlib

    table = matplotlib.colormaps[WEIGHT_COLORS](np.linspace(0.0, 1.0, 256))
    table = np.round(255 * table[:, :3]).astype(np.uint8)
    index = np.clip((values / limit + 1.0) * 127.5, 0, 255).astype(np.intp)
    return table[index]


def weight_sheet(images: np.ndarray, labels: list[str], title: str, scale: int = 8):
    """Weight images side by side (five to a row) on one colour scale, one block of
    ``scale`` pixels per weight, titled, with a colour bar; a Pillow image."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=12)
    limit = float(np.abs(images).max()) or 1.0
    count, side = len(images), images.shape[1] * scale
    cols = min(count, 5)
    rows = math.ceil(count / cols)
    pad, head, label_h, bar_w = 8, 22, 16 if count > 1 else 0, 14
    cell_w, cell_h = side + pad, side + label_h + pad
    width = pad + cols * cell_w + bar_w + 60
    height = head + rows * cell_h + 2 * pad  # room for the lowest tick label
    sheet = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(sheet)
    draw.text((width // 2, 4), title, fill=BLACK, font=font, anchor="mt")
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        x = pad + (i % cols) * cell_w
        y = head + (i // cols) * cell_h
        if label_h:
            draw.text((x + side // 2, y), label, fill=BLACK, font=font, anchor="mt")
        pixels = _colours(np.kron(image, np.ones((scale, scale))), limit)
        sheet.paste(Image.fromarray(pixels), (x, y + label_h))
    # the colour bar: +limit at the top, 0 in the middle, -limit at the bottom
    bar_x, bar_top, bar_h = pad + cols * cell_w, head + label_h, rows * cell_h - pad
    ramp = np.linspace(limit, -limit, bar_h)[:, None].repeat(bar_w, axis=1)
    sheet.paste(Image.fromarray(_colours(ramp, limit)), (bar_x, bar_top))
    draw.rectangle((bar_x, bar_top, bar_x + bar_w, bar_top + bar_h), outline=BLACK)
    for value, y in ((limit, 0), (0.0, bar_h // 2), (-limit, bar_h - 1)):
        tick_y = bar_top + y
        draw.line((bar_x + bar_w, tick_y, bar_x + bar_w + 3, tick_y), fill=BLACK)
        draw.text(
            (bar_x + bar_w + 6, tick_y),
            f"{value:+.2g}" if value else "0",
            fill=BLACK,
            font=font,
            anchor="lm",
        )
    return sheet


def save_weight_pngs(
    model: LinearModel, labels: list[str], directory: Path, title: str
) -> None:
    """``weights_grid.png``, every class on one scale, and under ``weights/`` one
    PNG per class at least ``SIDE_PX`` wide (8 px per weight for MNIST) on its own
    scale, named by its label without spaces (``2-vs-3.png``)."""
    images = weight_images(model)
    scale = -(-SIDE_PX // images.shape[1])
    (directory / "weights").mkdir(parents=True, exist_ok=True)
    grid_scale = scale // 2 if len(images) > 1 else scale
    weight_sheet(images, labels, f"weights: {title}", grid_scale).save(
        directory / "weights_grid.png"
    )
    for image, label in zip(images, labels, strict=True):
        weight_sheet(image[None], [label], f"weights of {label}", scale).save(
            directory / "weights" / f"{label.replace(' ', '-')}.png"
        )
