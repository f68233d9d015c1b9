"""Contact sheets: thumbnails of faces in a grid with a title and, on demo data, a banner.

- :func:`near_duplicate_sheet` (download stage): near-duplicate pairs on both sides of
  ``download.near_threshold``: the most distant pairs still called near duplicates, and the
  closest pairs kept as distinct images, so the threshold can be checked by eye.
- :func:`identity_sheet` (split stage, ``split.group_by: identity``): the largest identity groups
  of :mod:`maskprivacy.datasets.identity_groups` and the pairs just under and over the threshold.
- :func:`rejects_sheet` (split stage): the inputs the ``align`` and ``mask`` stages could not use,
  with the reason each was rejected, so a ``no_face`` can be seen to be no face.
- :func:`sheet_fonts`, :func:`sheet_header`, :func:`thumb`, :func:`short`, :func:`fit_lines`:
  what every contact sheet shares.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from maskprivacy.core.plumbing import atomic_path

CELL = 96  # thumbnail side on the contact sheet


def near_duplicate_sheet(
    pairs: pd.DataFrame,
    images: str | os.PathLike,
    threshold: int,
    out: str | os.PathLike,
    per_panel: int = 16,
    demo: bool = False,
) -> Path:
    """Draw the pairs nearest the threshold, inside and outside it, as a PNG; return its path."""
    from PIL import Image, ImageDraw

    images = Path(images)
    inside = pairs[pairs["near"].astype(bool)].sort_values(
        ["distance", "file_a"], ascending=[False, True], kind="stable"
    )
    outside = pairs[~pairs["near"].astype(bool)].sort_values(["distance", "file_a"], kind="stable")
    panels = [
        (
            f"called near duplicates (distance <= {threshold}): the {min(per_panel, len(inside))} "
            f"most distant of {len(inside)} pairs",
            inside.head(per_panel),
        ),
        (
            f"kept as distinct images (distance > {threshold}): the "
            f"{min(per_panel, len(outside))} closest pairs",
            outside.head(per_panel),
        ),
    ]
    cols = 4
    pair_w = 2 * CELL + 12
    caption = 28
    title_h = 22
    font, small, big = sheet_fonts()
    height = 30 + (24 if demo else 0)
    for _, rows in panels:
        height += title_h + max(1, -(-len(rows) // cols)) * (CELL + caption) + 8
    sheet = Image.new("RGB", (cols * pair_w, height), "white")
    draw = ImageDraw.Draw(sheet)
    y = sheet_header(
        draw,
        f"Near duplicates: {len(inside)} pairs within {threshold} of 255 bits "
        "(255-bit DCT pHash); labels age/sex/race",
        demo,
        big,
        30,
    )
    for title, rows in panels:
        draw.text((6, y + 4), title, fill="navy", font=font)
        y += title_h
        if rows.empty:
            draw.text((6, y + 4), "(no pair)", fill="gray", font=font)
        for k, r in enumerate(rows.itertuples(index=False)):
            x0 = (k % cols) * pair_w + 4
            y0 = y + (k // cols) * (CELL + caption)
            for n, name in enumerate((r.file_a, r.file_b)):
                sheet.paste(thumb(images / name), (x0 + n * CELL, y0))
            draw.text(
                (x0, y0 + CELL + 1),
                f"d={r.distance}  {r.labels_a} | {r.labels_b}",
                fill="black" if r.labels_a == r.labels_b else "firebrick",
                font=font,
            )
            for n, name in enumerate((r.file_a, r.file_b)):
                draw.text((x0 + n * CELL, y0 + CELL + 14), short(name), fill="dimgray", font=small)
        y += max(1, -(-len(rows) // cols)) * (CELL + caption) + 8
    with atomic_path(out, suffix=".png") as tmp:
        sheet.save(tmp, format="PNG")
    return Path(out)


REJECT_STAGES = ("align", "mask")  # the stages whose rejects the rejects sheet shows


def rejects_sheet(
    rejects: pd.DataFrame,
    images: str | os.PathLike,
    out: str | os.PathLike,
    limit: int = 60,
    cols: int = 10,
    demo: bool = False,
) -> Path:
    """A PNG of the inputs the ``align`` and ``mask`` stages rejected (:data:`REJECT_STAGES`),
    each as it came in (``images``: the download stage's folder) and captioned with its reason:
    the first ``limit`` by stage, reason and file, and how many there are by reason. A file that
    cannot be shown (not decodable) is a grey cell. A caption is kept to its cell
    (:func:`fit_lines`): a reason in up to two lines, the file in one."""
    from PIL import Image, ImageDraw

    images = Path(images)
    rows = rejects[rejects["stage"].isin(REJECT_STAGES)] if len(rejects) else rejects
    rows = rows.sort_values(["stage", "reason", "file"], kind="stable") if len(rows) else rows
    shown = rows.head(limit)
    font, small, big = sheet_fonts()
    caption = 38  # two lines of the reason, one of the file
    width = CELL - 4  # a caption's width: a gap between neighbouring captions
    lines = -(-len(shown) // cols)
    body = lines * (CELL + caption) if lines else 24
    sheet = Image.new("RGB", (cols * CELL + 8, 52 + (24 if demo else 0) + body), "white")
    draw = ImageDraw.Draw(sheet)
    counts = (
        ", ".join(
            f"{n} {stage}/{reason}"
            for (stage, reason), n in rows.groupby(["stage", "reason"], sort=True).size().items()
        )
        if len(rows)
        else "none"
    )
    y = sheet_header(
        draw,
        f"Inputs the align and mask stages rejected: {len(rows)} ({counts})",
        demo,
        big,
        28,
    )
    if len(shown) < len(rows):
        draw.text((6, y), f"the first {len(shown)} shown", fill="gray", font=font)
    y += 20
    if not len(shown):
        draw.text((6, y + 4), "(every input was aligned and masked)", fill="gray", font=font)
    for k, r in enumerate(shown.itertuples(index=False)):
        x0, y0 = (k % cols) * CELL + 4, y + (k // cols) * (CELL + caption)
        sheet.paste(thumb(images / str(r.file)), (x0, y0))
        for n, line in enumerate(fit_lines(draw, str(r.reason), font, width, 2)):
            draw.text((x0, y0 + CELL + 1 + 12 * n), line, fill="firebrick", font=font)
        (name,) = fit_lines(draw, short(str(r.file)), small, width)
        draw.text((x0, y0 + CELL + 26), name, fill="dimgray", font=small)
    with atomic_path(out, suffix=".png") as tmp:
        sheet.save(tmp, format="PNG")
    return Path(out)


def sheet_fonts() -> tuple[Any, Any, Any]:
    """The fonts of the contact sheets: text, small captions, titles."""
    from PIL import ImageFont

    try:
        return (
            ImageFont.load_default(size=11),
            ImageFont.load_default(size=8),
            ImageFont.load_default(size=14),
        )
    except TypeError:  # pragma: no cover - Pillow < 10.1
        f = ImageFont.load_default()
        return f, f, f


def sheet_header(draw: Any, title: str, demo: bool, big: Any, y: int) -> int:
    """A contact sheet's title line, then at ``y`` the DEMO DATA banner on demo data; returns
    the height where the sheet's content starts."""
    draw.text((6, 6), title, fill="black", font=big)
    if demo:
        draw.text((6, y), "DEMO DATA: synthetic faces, not UTKFace", fill="red", font=big)
        y += 24
    return y


def thumb(path: Path) -> Any:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.convert("RGB").resize((CELL, CELL))
    except (OSError, ValueError):
        return Image.new("RGB", (CELL, CELL), "lightgray")


def short(name: str) -> str:
    """A file name cut to fit under a thumbnail (labels and the start of the stamp)."""
    stem = name.replace(".jpg.chip.jpg", "")
    return stem if len(stem) <= 19 else stem[:18] + "~"


def fit_lines(draw: Any, text: str, font: Any, width: int, lines: int = 1) -> list[str]:
    """``text`` in at most ``lines`` lines, each no wider than ``width`` px in ``font``: broken
    after the last underscore, hyphen or space that fits ('landmarks_', 'implausible'), else
    where the width ends; a text too long for them ends in '~'."""
    out: list[str] = []
    rest = text
    while rest and len(out) < lines:
        n = 1
        while n < len(rest) and draw.textlength(rest[: n + 1], font=font) <= width:
            n += 1
        if n < len(rest):
            n = max(rest.rfind(c, 0, n) for c in "_- ") + 1 or n
        out.append(rest[:n])
        rest = rest[n:]
    if rest:  # the last line: as much of the rest as fits before the '~'
        last = out[-1] + rest
        while last and draw.textlength(last + "~", font=font) > width:
            last = last[:-1]
        out[-1] = last + "~"
    return out or [""]


def identity_sheet(
    groups: pd.DataFrame,
    pairs: pd.DataFrame,
    paths: dict[str, Path],
    threshold: float,
    out: str | os.PathLike,
    n_groups: int = 4,
    per_group: int = 10,
    per_panel: int = 12,
    demo: bool = False,
) -> Path:
    """A PNG of the largest identity groups (a row of faces each), the pairs just under the
    threshold (called one person) and the pairs just over it that stay apart (two people)."""
    from PIL import Image, ImageDraw

    sizes = groups.groupby("identity")["file"].size().sort_values(ascending=False, kind="stable")
    top = [g for g in sizes.index if sizes[g] > 1][:n_groups]
    under = pairs[pairs["linked"]].sort_values(
        ["distance", "file_a"], ascending=[False, True], kind="stable"
    )
    ident = groups.set_index("file")["identity"]
    apart = pairs[~pairs["linked"]]
    apart = apart[apart["file_a"].map(ident) != apart["file_b"].map(ident)]
    over = apart.sort_values(["distance", "file_a"], kind="stable")
    under, over = under.head(per_panel), over.head(per_panel)
    font, small, big = sheet_fonts()
    cols = 4
    pair_w = 2 * CELL + 12
    width = max(per_group * CELL + 8, cols * pair_w)
    row_h = CELL + 16
    pair_h = CELL + 28
    height = 36 + (24 if demo else 0) + 3 * 24 + max(1, len(top)) * row_h
    height += sum(max(1, -(-len(p) // cols)) * pair_h + 8 for p in (under, over))
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    y = sheet_header(
        draw,
        f"Identities: {sizes.size} groups of {int(sizes.sum())} faces, dlib descriptor distance "
        f"< {threshold} links two faces (connected components)",
        demo,
        big,
        32,
    )
    draw.text(
        (6, y + 4),
        f"the {len(top)} largest groups (up to {per_group} faces each)",
        fill="navy",
        font=font,
    )
    y += 24
    if not top:
        draw.text((6, y + 4), "(every face is its own identity)", fill="gray", font=font)
    for g in top:
        members = groups.loc[groups["identity"] == g, "file"].tolist()
        for k, name in enumerate(members[:per_group]):
            sheet.paste(thumb(paths[name]), (4 + k * CELL, y))
        draw.text((4, y + CELL + 1), f"{sizes[g]} faces", fill="black", font=font)
        y += row_h
    panels = [
        (f"one person (distance < {threshold}): the {len(under)} most distant linked pairs", under),
        (f"two people (distance >= {threshold}): the {len(over)} closest pairs kept apart", over),
    ]
    for title, rows in panels:
        draw.text((6, y + 4), title, fill="navy", font=font)
        y += 24
        if rows.empty:
            draw.text((6, y + 4), "(no pair within the window)", fill="gray", font=font)
        for k, r in enumerate(rows.itertuples(index=False)):
            x0 = (k % cols) * pair_w + 4
            y0 = y + (k // cols) * pair_h
            for n, name in enumerate((r.file_a, r.file_b)):
                sheet.paste(thumb(paths[name]), (x0 + n * CELL, y0))
                draw.text((x0 + n * CELL, y0 + CELL + 14), short(name), fill="dimgray", font=small)
            draw.text((x0, y0 + CELL + 1), f"d={r.distance:.3f}", fill="black", font=font)
        y += max(1, -(-len(rows) // cols)) * pair_h + 8
    with atomic_path(out, suffix=".png") as tmp:
        sheet.save(tmp, format="PNG")
    return Path(out)
