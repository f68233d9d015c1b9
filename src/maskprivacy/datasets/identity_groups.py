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
distribution, the pairs just under and just over the threshold for a contact sheet
(:func:`maskprivacy.report.sheets.identity_sheet`: the largest groups and those pairs) so a
person can judge it, and the share of test faces whose
identity also sits in train under the duplicates-only split (:func:`leakage`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from maskprivacy.core.io import read_table, rejects_frame
from maskprivacy.datasets.split import PARTS
from maskprivacy.faces.descriptors import MODEL_NAME, read_descriptors

DEFAULT_THRESHOLD = 0.6  # dlib's same-person threshold (Euclidean distance of descriptors)
SHEET_WINDOW = 0.05  # pairs this close to the threshold, on either side, go to the contact sheet


# --------------------------------------------------------------------------------------------
# Identity groups (the split stage)
# --------------------------------------------------------------------------------------------


def close_pairs(
    x: np.ndarray, radius: float, block: int = 512
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair ``i < j`` with Euclidean distance ``< radius``: arrays ``(i, j, distance)``
    (int32, int32, float32), sorted by (i, j).

    Exact: each block of rows is one matrix product with the rows from it onwards
    (``|a - b|^2 = |a|^2 + |b|^2 - 2 a.b``), so memory stays at ``block`` x N floats; the
    distances of the pairs found are then recomputed directly (the expansion loses digits).
    """
    x = np.asarray(x, dtype=np.float32)
    sq = (x.astype(np.float64) ** 2).sum(axis=1).astype(np.float32)
    slack = 1e-3 * (1 + float(radius)) ** 2  # float32 rounding of the expansion
    out_i, out_j, out_d = (
        [np.zeros(0, np.int32)],
        [np.zeros(0, np.int32)],
        [np.zeros(0, np.float32)],
    )
    for a in range(0, len(x), block):
        d2 = sq[a : a + block, None] + sq[None, a:] - 2 * (x[a : a + block] @ x[a:].T)
        ii, jj = np.nonzero(d2 < float(radius) ** 2 + slack)
        keep = jj > ii
        ii, jj = ii[keep] + a, jj[keep] + a
        d = np.concatenate(  # in chunks: the pairs' difference vectors are 1 KB each
            [np.zeros(0)]
            + [
                np.linalg.norm(
                    x[ii[k : k + 65536]].astype(np.float64) - x[jj[k : k + 65536]], axis=1
                )
                for k in range(0, len(ii), 65536)
            ]
        )
        inside = d < radius
        out_i.append(ii[inside].astype(np.int32))
        out_j.append(jj[inside].astype(np.int32))
        out_d.append(d[inside].astype(np.float32))
    # blocks in row order, np.nonzero row-major within each: already sorted by (i, j)
    return tuple(np.concatenate(v) for v in (out_i, out_j, out_d))


def components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Connected components of the graph on ``n`` nodes with edges ``(i, j)``: a label each."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(i), np.int8), (i, j)), shape=(n, n)).tocsr()
    return connected_components(graph, directed=False)[1]


def _named(files: Sequence[str], labels: np.ndarray) -> np.ndarray:
    """Each file's group named by the smallest file name in it (ids independent of order)."""
    names = pd.Series(list(files))
    return names.groupby(labels).transform("min").to_numpy()


SWEEP = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)  # thresholds the report also describes


def identity_groups(
    files: Sequence[str],
    x: np.ndarray,
    threshold: float = DEFAULT_THRESHOLD,
    duplicates: pd.DataFrame | None = None,
    sheet_pairs: int = 200,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Groups of ``files``: connected components of "descriptor distance < threshold", merged
    with the duplicate groups (``duplicates``: columns ``file``, ``group``).

    Returns ``(groups, pairs, sweep)``: ``groups`` has columns ``file``, ``group`` (merged with
    duplicates; named by the smallest file name in it, so ids do not depend on order),
    ``identity`` (the component of the descriptors alone) and ``group_size``; ``pairs``
    (``file_a``, ``file_b``, ``distance``, ``linked``): up to ``sheet_pairs`` pairs on each
    side of the threshold, the closest to it (within ``SHEET_WINDOW``; apart: of different
    identities), for the contact sheet; ``sweep``: identities and the largest one at lower
    thresholds, and the counts of pairs within the window.
    """
    files = list(files)
    if len(set(files)) != len(files):
        raise ValueError("identity_groups: file names must be unique")
    n = len(files)
    i, j, d = close_pairs(x, threshold + SHEET_WINDOW)
    linked = d < threshold
    ident = components(n, i[linked], j[linked])
    di, dj = [i[linked]], [j[linked]]
    if duplicates is not None and len(duplicates):
        index = {f: k for k, f in enumerate(files)}
        dup = duplicates[duplicates["file"].isin(index)]
        pos = dup["file"].map(index).to_numpy()
        first = dup.groupby("group")["file"].transform("first").map(index).to_numpy()
        di.append(first.astype(np.int32))
        dj.append(pos.astype(np.int32))
    merged = components(n, np.concatenate(di), np.concatenate(dj))
    groups = pd.DataFrame(
        {"file": files, "group": _named(files, merged), "identity": _named(files, ident)}
    )
    groups["group_size"] = groups.groupby("group")["file"].transform("size")
    near = np.abs(d - threshold) < SHEET_WINDOW
    under = np.flatnonzero(near & linked)
    under = under[np.lexsort((i[under], -d[under]))][:sheet_pairs]
    apart = np.flatnonzero(near & ~linked)
    apart = apart[ident[i[apart]] != ident[j[apart]]]
    apart = apart[np.lexsort((i[apart], d[apart]))][:sheet_pairs]
    sel = np.concatenate([under, apart])
    pairs = pd.DataFrame(
        {
            "file_a": [files[k] for k in i[sel]],
            "file_b": [files[k] for k in j[sel]],
            "distance": d[sel].astype(float),
            "linked": linked[sel],
        }
    )
    sweep: dict[str, Any] = {"window": SHEET_WINDOW}
    sweep["pairs_linked_in_window"] = int((near & linked).sum())
    sweep["pairs_apart_in_window"] = int((near & ~linked).sum())
    by_threshold = {}
    for t in sorted({*[v for v in SWEEP if v <= threshold], threshold}):
        sizes = np.bincount(components(n, i[d < t], j[d < t])) if n else np.zeros(0, int)
        by_threshold[f"{t:g}"] = {
            "identities": int(len(sizes)),
            "faces_in_shared_identities": int(sizes[sizes > 1].sum()),
            "largest": int(sizes.max()) if n else 0,
            "largest_share": round(float(sizes.max() / n), 4) if n else None,
        }
    sweep["by_threshold"] = by_threshold
    return groups, pairs, sweep


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


def check_parts(
    table: pd.DataFrame,
    fractions: Sequence[float],
    groups: pd.DataFrame,
    sweep: dict[str, Any] | None = None,
) -> None:
    """A clear error when keeping groups together left a part with less than half its share
    of ``split.fractions`` (a giant group, or too few groups): the split would be degenerate."""
    n = max(len(table), 1)
    short = [
        f"{p} {(table['split'] == p).sum() / n:.1%} (asked {f:.0%})"
        for p, f in zip(PARTS, fractions, strict=True)
        if f > 0 and (table["split"] == p).sum() / n < f / 2
    ]
    if short:
        sizes = group_sizes(groups)
        by_t = (sweep or {}).get("by_threshold", {})
        hint = "; ".join(
            f"{t}: {v['identities']} identities, the largest {v['largest_share'] or 0:.0%}"
            for t, v in by_t.items()
        )
        raise ValueError(
            f"split.group_by: identity cannot divide the faces by split.fractions: "
            f"{', '.join(short)}. The {len(table)} faces form {sizes['groups']} group(s) "
            f"(identities merged with duplicates), the largest of {sizes['largest'][:3]} faces "
            f"({sizes['largest_share'] or 0:.0%}): linked pairs chain into a giant group. "
            + (f"Largest identity by threshold: {hint}. " if hint else "")
            + "Lower split.identity_threshold, or use split.group_by: duplicates (the demo set "
            "shows two people, so it cannot be split by identity at dlib's threshold)."
        )


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
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Identity groups for the faces the split will see.

    Returns ``(manifest, groups, rejects, pairs, sweep)``: the manifest without the faces that
    have no descriptor (each becomes a split reject ``no_identity`` carrying the identity
    stage's reason), the merged groups (``file``, ``group``, ``identity``, ``group_size``),
    those rejects, and the pairs near the threshold and the threshold sweep of
    :func:`identity_groups`.
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
    groups, pairs, sweep = identity_groups([files[i] for i in keep], x[keep], threshold, duplicates)
    return manifest[~manifest["file"].isin(lacking)], groups, rejects, pairs, sweep


def report(
    cfg: dict[str, Any],
    groups: pd.DataFrame,
    identity_split: pd.DataFrame,
    duplicates_split: pd.DataFrame,
    no_identity: pd.DataFrame,
    sweep: dict[str, Any],
    sheet: str,
) -> dict[str, Any]:
    """The identity part of the data report; ``sheet`` names its contact sheet
    (:func:`maskprivacy.report.sheets.identity_sheet`, drawn by the stage).

    ``duplicates_split`` is the split the same method and seed give with duplicate groups
    alone (``split.group_by: duplicates``): its leakage is what identity grouping removes.
    """
    threshold = float(cfg.get("identity_threshold", DEFAULT_THRESHOLD))
    ident = groups.set_index("file")["identity"]
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
            "window": sweep["window"],
            "linked": sweep["pairs_linked_in_window"],
            "apart": sweep["pairs_apart_in_window"],
        },
        "by_threshold": sweep["by_threshold"],
        "leakage_duplicates_split": leakage(duplicates_split, ident),
        "leakage_identity_split": leakage(identity_split, ident),
        "sheet": sheet,
    }


def summary(rep: dict[str, Any]) -> dict[str, Any]:
    """The few figures of :func:`report` that the stage log shows."""
    return {
        "identities": rep["identities"]["groups"],
        "largest": rep["identities"]["largest"][:3],
        "test_share_leaking_duplicates_split": rep["leakage_duplicates_split"]["share"],
        "test_share_leaking_identity_split": rep["leakage_identity_split"]["share"],
    }
