"""The mask stage's contact sheet: a few faces with every mask type drawn on each."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from PIL import Image, ImageDraw

from maskprivacy.masks.choice import image_rng
from maskprivacy.masks.geometry import MASK_TYPES, TEXTURES
from maskprivacy.masks.paint import render


def contact_sheet(
    faces: list[tuple[str, Image.Image, np.ndarray]],
    configured: Iterable[str] = (),
    seed: int = 0,
    thumb: int = 160,
) -> Image.Image:
    """A picture for people: one row per face, the input then every mask type drawn on it.

    Columns: the input, then each of :data:`MASK_TYPES` (configured types are marked ``*``);
    the same landmarks serve every type. Cloth rows cycle through :data:`TEXTURES`. Each cell is
    captioned with its colour and texture.
    """
    from PIL import ImageFont

    configured = set(configured)
    font = ImageFont.load_default(size=max(10, thumb // 12))
    head, cap = thumb // 6, thumb // 8
    cols = ["input", *MASK_TYPES]
    sheet = Image.new(
        "RGB", (thumb * len(cols), head + len(faces) * (thumb + cap)), (255, 255, 255)
    )
    draw = ImageDraw.Draw(sheet)
    for j, name in enumerate(cols):
        label = f"{name}*" if name in configured else name
        draw.text((j * thumb + 4, 2), label, fill=(0, 0, 0), font=font)
    for i, (fname, img, lm) in enumerate(faces):
        y = head + i * (thumb + cap)
        label = fname
        while len(label) > 4 and draw.textlength(label, font=font) > thumb - 6:
            label = label[:-2]
        cells = [(img, label if label == fname else label + "~")]
        for t in MASK_TYPES:
            rng = image_rng(seed, f"contact_sheet:{fname}:{t}")
            tex = TEXTURES[i % len(TEXTURES)] if t == "cloth" else None
            r = render(img, lm, t, rng, texture=tex)
            cells.append((r.image, f"{r.info['colour']} {r.info['texture']}"))
        for j, (im, text) in enumerate(cells):
            sheet.paste(im.resize((thumb, thumb), Image.Resampling.LANCZOS), (j * thumb, y))
            draw.text((j * thumb + 3, y + thumb + 1), text, fill=(60, 60, 60), font=font)
    return sheet
