"""Identity groups for the split (``split.group_by: identity``), from the identity stage's
descriptors (:mod:`.identity`).

Two faces are one person when their descriptors lie closer than ``split.identity_threshold``
(dlib's documented same-person threshold is 0.6, at which it reports 99.38% accuracy on LFW
pairs); groups are the connected components of that graph (union-find; the search is exact,
one block of rows against the rest at a time, so 23k faces take seconds), merged with the
duplicate groups of ``download``. The split then keeps each group on one side, as it keeps
duplicate groups; faces without a descriptor become split rejects (``no_identity``).

Connected components chain: one false link joins two people, so on a large set a loose
threshold can grow one giant group. The data report therefore gives the group size
distribution, a contact sheet (:func:`contact_sheet`: the largest groups, and the pairs just
under and just over the threshold) so a person can judge it, and the share of test faces whose
identity also sits in train under the duplicates-only split (:func:`leakage`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .dedup import _UnionFind
from .identity import MODEL_NAME, read_descriptors
from .io import atomic_path, read_table, rejects_frame
from .report import CELL, PARTS, _short, _thumb
from .shards import locate

DEFAULT_THRESHOLD = 0.6  # dlib's same-person threshold (Euclidean distance of descriptors)
SHEET_WINDOW = 0.05  # pairs this close to the threshold, on either side, go to the contact sheet


# --------------------------------------------------------------------------------------------
# Identity groups (the split stage)
# --------------------------------------------------------------------------------------------


def close_pairs(x: np.ndarray, radius: float, block: int = 512) -> np.ndarray:
    """Every pair ``(i, j, distance)`` with ``i < j`` and Euclidean distance ``< radius``.

    Exact: each block of rows is one matrix product with the rows from it onwards
    (``|a - b|^2 = |a|^2 + |b|^2 - 2 a.b``), so memory stays at ``block`` x N floats.
    Returned as float64 rows sorted by (i, j).
    """
    x = np.asarray(x, dtype=np.float32)
    n = len(x)
    out = [np.zeros((0, 3))]
    sq = (x.astype(np.float64) ** 2).sum(axis=1).astype(np.float32)
    r2 = float(radius) ** 2
    for a in range(0, n, block):
        d2 = sq[a : a + block, None] + sq[None, a:] - 2 * (x[a : a + block] @ x[a:].T)
        ii, jj = np.nonzero(d2 < r2)
        keep = jj > ii
        ii, jj = ii[keep], jj[keep]
        # recomputed exactly for the pairs found (the expansion loses digits near 0)
        d = np.linalg.norm(x[ii + a].astype(np.float64) - x[jj + a], axis=1)
        inside = d < radius
        out.append(np.stack([ii[inside] + a, jj[inside] + a, d[inside]], axis=1))
    pairs = np.concatenate(out)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def identity_groups(
    files: Sequence[str],
    x: np.ndarray,
    threshold: float = DEFAULT_THRESHOLD,
    duplicates: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Groups of ``files``: connected components of "descriptor distance < threshold", merged
    with the duplicate groups (``duplicates``: columns ``file``, ``group``).

    Returns ``(groups, pairs)``: ``groups`` has columns ``file``, ``group`` (the smallest file
    name of its component, so ids do not depend on order), ``identity`` (the component of the
    descriptors alone) and ``group_size``; ``pairs`` (``file_a``, ``file_b``, ``distance``,
    ``linked``) every pair within ``SHEET_WINDOW`` of the threshold, for the contact sheet.
    """
    files = list(files)
    if len(set(files)) != len(files):
        raise ValueError("identity_groups: file names must be unique")
    pairs = close_pairs(x, threshold + SHEET_WINDOW)
    ii, jj, dd = pairs[:, 0].astype(int), pairs[:, 1].astype(int), pairs[:, 2]
    linked = dd < threshold
    ident = _UnionFind(files)
    for i, j in zip(ii[linked].tolist(), jj[linked].tolist(), strict=True):
        ident.union(files[i], files[j])
    merged = _UnionFind(files)
    for i, j in zip(ii[linked].tolist(), jj[linked].tolist(), strict=True):
        merged.union(files[i], files[j])
    if duplicates is not None and len(duplicates):
        known = set(files)
        dup = duplicates[duplicates["file"].isin(known)]
        for _, members in dup.groupby("group")["file"]:
            members = members.tolist()
            for other in members[1:]:
                merged.union(members[0], other)
    groups = pd.DataFrame(
        {
            "file": files,
            "group": [merged.find(f) for f in files],
            "identity": [ident.find(f) for f in files],
        }
    )
    groups["group_size"] = groups.groupby("group")["file"].transform("size")
    near = np.abs(dd - threshold) < SHEET_WINDOW
    out_pairs = pd.DataFrame(
        {
            "file_a": [files[i] for i in ii[near]],
            "file_b": [files[j] for j in jj[near]],
            "distance": dd[near],
            "linked": linked[near],
        }
    )
    return groups, out_pairs


def leakage(split: pd.DataFrame, identity: pd.Series) -> dict[str, Any]:
    """How many test faces have their identity in train too: ``split`` has ``file`` and
    ``split``; ``identity`` maps a file to its identity group."""
    ident = split["file"].map(identity)
    ident = ident.where(ident.notna(), split["file"])
    train_ids = set(ident[split["split"] == "train"])
    test = split["split"] == "test"
    shared = ident[test].isin(train_ids)
    n_test = int(test.sum())
    return {
        "test_faces": n_test,
        "test_faces_with_identity_in_train": int(shared.sum()),
        "share": round(float(shared.mean()), 6) if n_test else None,
    }


def group_sizes(groups: pd.DataFrame, column: str = "group") -> dict[str, Any]:
    """Number of groups and their size distribution (sizes 1, 2, 3-5, 6-10, 11-50, 51+)."""
    sizes = groups.groupby(column)["file"].size()
    bins = [(1, 1), (2, 2), (3, 5), (6, 10), (11, 50), (51, None)]
    dist = {}
    for lo, hi in bins:
        sel = (sizes >= lo) & (sizes <= (hi if hi is not None else math.inf))
        label = f"{lo}" if lo == hi else (f"{lo}+" if hi is None else f"{lo}-{hi}")
        dist[label] = {"groups": int(sel.sum()), "faces": int(sizes[sel].sum())}
    return {
        "groups": int(len(sizes)),
        "groups_with_several_faces": int((sizes > 1).sum()),
        "faces_in_such_groups": int(sizes[sizes > 1].sum()),
        "largest": sorted(sizes.tolist(), reverse=True)[:10],
        "largest_share": round(float(sizes.max() / sizes.sum()), 6) if len(sizes) else None,
        "by_size": dist,
    }


def check_parts(table: pd.DataFrame, fractions: Sequence[float], groups: pd.DataFrame) -> None:
    """A clear error when keeping identities together left a part empty that should not be."""
    empty = [
        p
        for p, f in zip(PARTS, fractions, strict=True)
        if f > 0 and not (table["split"] == p).any()
    ]
    if empty:
        sizes = group_sizes(groups)
        raise ValueError(
            f"split.group_by: identity left the {' and '.join(empty)} part(s) empty: the "
            f"{len(table)} faces form {sizes['groups']} group(s) (identities merged with "
            f"duplicates), the largest of {sizes['largest'][:3]} faces, too few to divide by "
            "split.fractions. Lower split.identity_threshold, or use split.group_by: "
            "duplicates (the demo set shows two people, so it cannot be split by identity at "
            "dlib's threshold)."
        )


# --------------------------------------------------------------------------------------------
# The contact sheet
# --------------------------------------------------------------------------------------------


def contact_sheet(
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
    from PIL import Image, ImageDraw, ImageFont

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
    try:
        font = ImageFont.load_default(size=11)
        small = ImageFont.load_default(size=8)
        big = ImageFont.load_default(size=14)
    except TypeError:  # pragma: no cover - Pillow < 10.1
        font = small = big = ImageFont.load_default()
    cols = 4
    pair_w = 2 * CELL + 12
    width = max(per_group * CELL + 8, cols * pair_w)
    row_h = CELL + 16
    pair_h = CELL + 28
    height = 36 + (24 if demo else 0) + 3 * 24 + max(1, len(top)) * row_h
    height += sum(max(1, -(-len(p) // cols)) * pair_h + 8 for p in (under, over))
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text(
        (6, 6),
        f"Identities: {sizes.size} groups of {int(sizes.sum())} faces, dlib descriptor distance "
        f"< {threshold} links two faces (connected components)",
        fill="black",
        font=big,
    )
    y = 32
    if demo:
        draw.text((6, y), "DEMO DATA: synthetic faces, not UTKFace", fill="red", font=big)
        y += 24
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
            sheet.paste(_thumb(paths[name]), (4 + k * CELL, y))
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
                sheet.paste(_thumb(paths[name]), (x0 + n * CELL, y0))
                draw.text((x0 + n * CELL, y0 + CELL + 14), _short(name), fill="dimgray", font=small)
            draw.text((x0, y0 + CELL + 1), f"d={r.distance:.3f}", fill="black", font=font)
        y += max(1, -(-len(rows) // cols)) * pair_h + 8
    with atomic_path(out, suffix=".png") as tmp:
        sheet.save(tmp, format="PNG")
    return Path(out)


# --------------------------------------------------------------------------------------------
# What the split stage calls
# --------------------------------------------------------------------------------------------


def for_split(
    cfg: dict[str, Any],
    manifest: pd.DataFrame,
    present: list[set[str]],
    duplicates: pd.DataFrame | None,
    descriptor_tables: Sequence[str | os.PathLike],
    reject_tables: Sequence[str | os.PathLike],
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Identity groups for the faces the split will see.

    Returns ``(manifest, groups, rejects, pairs)``: the manifest without the faces that have no
    descriptor (each becomes a split reject ``no_identity`` carrying the identity stage's
    reason), the merged groups (``file``, ``group``, ``identity``, ``group_size``), those
    rejects, and the pairs near the threshold (for the contact sheet).
    """
    threshold = float(cfg.get("identity_threshold", DEFAULT_THRESHOLD))
    files, x = read_descriptors(descriptor_tables)
    candidates = set(manifest["file"])
    for p in present:
        candidates &= p
    described = set(files)
    why = {}
    for t in reject_tables:
        r = read_table(t)
        why.update(zip(r["file"], r["reason"] + ": " + r["detail"].astype(str), strict=True))
    lacking = sorted(candidates - described)
    rejects = rejects_frame(
        [
            {
                "file": f,
                "stage": "split",
                "reason": "no_identity",
                "detail": f"no face descriptor ({why.get(f, 'not described')}), so its "
                "identity cannot be kept on one side",
            }
            for f in lacking
        ]
    )
    keep = [i for i, f in enumerate(files) if f in candidates]
    groups, pairs = identity_groups([files[i] for i in keep], x[keep], threshold, duplicates)
    return manifest[~manifest["file"].isin(lacking)], groups, rejects, pairs


def report(
    cfg: dict[str, Any],
    groups: pd.DataFrame,
    identity_split: pd.DataFrame,
    duplicates_split: pd.DataFrame,
    no_identity: pd.DataFrame,
    pairs: pd.DataFrame,
    aligned: Sequence[str | os.PathLike],
    sheet_out: str | os.PathLike,
    demo: bool = False,
) -> dict[str, Any]:
    """The identity part of the data report, and its contact sheet (``sheet_out``).

    ``duplicates_split`` is the split the same method and seed give with duplicate groups
    alone (``split.group_by: duplicates``): its leakage is what identity grouping removes.
    """
    threshold = float(cfg.get("identity_threshold", DEFAULT_THRESHOLD))
    ident = groups.set_index("file")["identity"]
    paths = dict(zip(groups["file"], locate(list(aligned), groups["file"].tolist()), strict=True))
    contact_sheet(groups, pairs, paths, threshold, sheet_out, demo=demo)
    return {
        "group_by": "identity",
        "threshold": threshold,
        "descriptor": f"dlib {MODEL_NAME} (128-D), Euclidean distance; groups are connected "
        "components of distance < threshold, merged with duplicate groups",
        "faces_described": int(len(groups)),
        "faces_without_descriptor": int(len(no_identity)),
        "identities": group_sizes(groups, "identity"),
        "groups_with_duplicates": group_sizes(groups, "group"),
        "pairs_near_threshold": {
            "window": SHEET_WINDOW,
            "linked": int(pairs["linked"].sum()),
            "apart": int((~pairs["linked"]).sum()),
        },
        "leakage_duplicates_split": leakage(duplicates_split, ident),
        "leakage_identity_split": leakage(identity_split, ident),
        "sheet": Path(sheet_out).name,
    }


def summary(rep: dict[str, Any]) -> dict[str, Any]:
    """The few figures of :func:`report` that the stage log shows."""
    return {
        "identities": rep["identities"]["groups"],
        "largest": rep["identities"]["largest"][:3],
        "test_share_leaking_duplicates_split": rep["leakage_duplicates_split"]["share"],
        "test_share_leaking_identity_split": rep["leakage_identity_split"]["share"],
    }
