"""Duplicates: byte-identical copies and near copies of one photo, and the groups the split keeps.

UTKFace holds 390 files that are byte copies of another file under another name (271 of them
with other labels than their twin), and several hundred near copies: the same photo cropped,
aligned or compressed again, mostly filed under another age. A copy on each side of the split
lets a network pass the test by recognising a photo it trained on.

**Exact duplicates** share a sha256. **Near duplicates** share a photo: their perceptual hashes
differ in at most ``download.near_threshold`` bits. The hash (:func:`phash_bits`) is a 255-bit
pHash: the image is decoded in grey (JPEG draft mode), box-resized to 32x32, transformed with a
2-D DCT-II, and each of the 16x16 lowest-frequency coefficients except the DC term is compared
with their median (1 = above). The distance of two images is the Hamming distance of their
hashes (0-255). A 64-bit pHash is too coarse for aligned faces (distinct people at distance 4).

**Threshold.** Among the distinct images of UTKFace the distances are bimodal (every hash
has 127 ones, so distances are even): pairs per distance 2-16: 17 44 74 73 83 76 70 55; 18-32:
25 28 19 23 13 10 7 10; 34-44: 11 6 7 2 8 7 (the valley); 46-52: 12 13 16 38; then the bulk of
distinct faces (419 pairs at 60, millions beyond). Checked by eye on contact sheets: up to 44
the pairs nearest the threshold are one photo cropped, aligned or compressed again (a few are
frames of one video); at 46 about a third are different photos, at 48 and beyond most are
different people. So ``near_threshold: 44`` (17% of the bits): 668 pairs on UTKFace. The
contact sheet ``results/data/near_duplicates.png`` shows the pairs on both sides of it.

**Search.** All pairs are compared exactly: with bits as +-1 vectors the Hamming distance is
``(255 - x.y) / 2``, so each block of rows is one float32 matrix product (BLAS, all cores) and
only the pairs within the radius leave it. 23.7k images take a few seconds on 2 cores.

**Groups.** A group is a connected set of files linked by equal bytes or a near-duplicate pair
(single-linkage). Policies, for exact copies (``download.duplicates``) and then for near copies
(``download.near_duplicates``) among the files the first left:

- ``keep_all``: keep every copy (the split still keeps each group on one side);
- ``keep_one``: keep the first file by name, reject the others (``duplicate_bytes``,
  ``near_duplicate``);
- ``drop_conflicts`` (default): as ``keep_one``, but a group whose files carry different labels
  (age, sex or race) is dropped whole (``duplicate_label_conflict``,
  ``near_duplicate_label_conflict``): no one knows which label is right;
- ``off`` (near copies only): no perceptual hashing; groups are exact copies only.

Files that cannot be decoded get no hash and stay single; the align stage rejects them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from maskprivacy.core.pixels import eight_bit
from maskprivacy.core.plumbing import no_bar

log = logging.getLogger(__name__)

POLICIES = ("keep_all", "keep_one", "drop_conflicts")
NEAR_POLICIES = ("off", *POLICIES)
LABELS = ["age", "sex", "race"]
HASH_SIDE = 32  # grey thumbnail side
HASH_BLOCK = 16  # low-frequency DCT block side
HASH_BITS = HASH_BLOCK * HASH_BLOCK - 1  # 255: the DC term is left out
DEFAULT_THRESHOLD = 44
# Pairs this much beyond the threshold are kept in the pairs table, for the contact sheet.
SHEET_MARGIN = 16
GROUP_COLUMNS = ["file", "group", "group_size", "kind", "phash", "action"]
PAIR_COLUMNS = ["file_a", "file_b", "distance", "near", "labels_a", "labels_b"]


# --------------------------------------------------------------------------------------------
# Exact duplicates
# --------------------------------------------------------------------------------------------


def exact_duplicates(
    manifest: pd.DataFrame, policy: str = "drop_conflicts"
) -> tuple[pd.DataFrame, list[dict]]:
    """Apply ``policy`` to files with equal sha256; return the kept manifest and reject rows."""
    if policy not in POLICIES:
        raise ValueError(f"download.duplicates must be one of {POLICIES}, got {policy!r}")
    if policy == "keep_all" or manifest.empty:
        return manifest, []
    m = manifest.sort_values("file", kind="stable")
    rejects: list[dict] = []
    drop: set[str] = set()
    for _, group in m[m["sha256"].duplicated(keep=False)].groupby("sha256", sort=True):
        files = group["file"].tolist()
        conflict = len(group[LABELS].drop_duplicates()) > 1
        if conflict and policy == "drop_conflicts":
            for f in files:
                others = ", ".join(o for o in files if o != f)
                rejects.append(
                    {
                        "file": f,
                        "stage": "download",
                        "reason": "duplicate_label_conflict",
                        "detail": f"same bytes, other labels: {others}",
                    }
                )
                drop.add(f)
        else:
            for f in files[1:]:
                rejects.append(
                    {
                        "file": f,
                        "stage": "download",
                        "reason": "duplicate_bytes",
                        "detail": f"same bytes as {files[0]} (kept)",
                    }
                )
                drop.add(f)
    kept = manifest[~manifest["file"].isin(drop)].reset_index(drop=True)
    return kept, rejects


def exact_stats(manifest: pd.DataFrame) -> dict[str, int]:
    """Counts of byte-identical copies as published (before any policy)."""
    m = manifest.sort_values("file", kind="stable")
    dup = m[m["sha256"].duplicated(keep=False)]
    copies = other = conflict_groups = 0
    n_groups = 0
    for _, g in dup.groupby("sha256", sort=True):
        n_groups += 1
        first = tuple(g[LABELS].iloc[0])
        rest = [tuple(r) for r in g[LABELS].iloc[1:].itertuples(index=False)]
        copies += len(rest)
        other += sum(r != first for r in rest)
        conflict_groups += len(set(rest) | {first}) > 1
    return {
        "exact_groups": n_groups,
        "exact_copies": copies,  # files beyond the first of their group
        "exact_copies_other_labels": other,  # ... whose labels differ from the first
        "exact_conflict_groups": conflict_groups,
    }


# --------------------------------------------------------------------------------------------
# Perceptual hash and search
# --------------------------------------------------------------------------------------------


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2 / n)
    m[0] /= np.sqrt(2)
    return m.astype(np.float32)


_DCT = _dct_matrix(HASH_SIDE)


def thumbnail(path: str | os.PathLike) -> np.ndarray | None:
    """The 32x32 grey thumbnail the hash is made from (float32), or None if undecodable."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.draft("L", (2 * HASH_SIDE, 2 * HASH_SIDE))  # JPEG: decode at 1/2..1/8 scale
            # a 16-bit image scaled to 8 bits (converted, it would clip to near white)
            grey = eight_bit(im).convert("L").resize((HASH_SIDE, HASH_SIDE), Image.Resampling.BOX)
            return np.asarray(grey, dtype=np.float32)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def hash_thumbnails(thumbs: np.ndarray) -> np.ndarray:
    """255-bit pHashes (bool, one row per image) of a stack of 32x32 grey thumbnails."""
    coeffs = _DCT @ thumbs.astype(np.float32) @ _DCT.T
    low = coeffs[:, :HASH_BLOCK, :HASH_BLOCK].reshape(len(thumbs), -1)[:, 1:]
    return low > np.median(low, axis=1, keepdims=True)


def phash_bits(path: str | os.PathLike) -> np.ndarray | None:
    """The 255-bit pHash of one image (bool array), or None if it cannot be decoded."""
    t = thumbnail(path)
    return None if t is None else hash_thumbnails(t[None])[0]


def phashes(
    paths: Sequence[str | os.PathLike], progress: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """``(bits, ok)``: one hash row per path; ``ok`` is False (bits all 0) when undecodable."""
    thumbs = np.zeros((len(paths), HASH_SIDE, HASH_SIDE), np.float32)
    ok = np.zeros(len(paths), bool)
    for i, p in enumerate(tqdm(paths, desc="phash", unit="img", disable=no_bar(progress))):
        t = thumbnail(p)
        if t is not None:
            thumbs[i], ok[i] = t, True
    bits = hash_thumbnails(thumbs) if len(paths) else np.zeros((0, HASH_BITS), bool)
    bits[~ok] = False
    return bits, ok


def to_hex(bits: np.ndarray) -> str:
    """A hash as 64 hex digits (the 255 bits, then a 0)."""
    return np.packbits(np.append(bits, False)).tobytes().hex()


def from_hex(text: str) -> np.ndarray:
    return np.unpackbits(np.frombuffer(bytes.fromhex(text), np.uint8))[:HASH_BITS].astype(bool)


def hamming(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.count_nonzero(a != b))


def near_pairs(bits: np.ndarray, radius: int, chunk: int = 1024) -> np.ndarray:
    """Every pair ``(i, j, distance)`` with ``i < j`` and Hamming distance ``<= radius``.

    Exact: bits become +-1 float32 vectors and each block of rows is one matrix product with the
    rows after it (distance = (bits - dot) / 2); sorted by (i, j).
    """
    n, nbits = bits.shape
    if n < 2:
        return np.zeros((0, 3), np.int64)
    s = bits.astype(np.float32) * 2 - 1
    min_dot = nbits - 2 * radius - 0.5
    out = []
    for a in range(0, n, chunk):
        dots = s[a : a + chunk] @ s[a:].T
        ii, jj = np.nonzero(dots >= min_dot)
        keep = jj > ii
        ii, jj = ii[keep], jj[keep]
        d = np.rint((nbits - dots[ii, jj]) / 2).astype(np.int64)
        out.append(np.stack([ii + a, jj + a, d], axis=1))
    pairs = np.concatenate(out).astype(np.int64)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


# --------------------------------------------------------------------------------------------
# Groups and policies
# --------------------------------------------------------------------------------------------


class _UnionFind:
    def __init__(self, items: Sequence[str]):
        self.parent = {x: x for x in items}

    def find(self, x: str) -> str:
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # the smaller name becomes the root: group ids do not depend on the edge order
            lo, hi = sorted((ra, rb))
            self.parent[hi] = lo


@dataclass
class Dedup:
    """The outcome of :func:`deduplicate`."""

    manifest: pd.DataFrame  # kept files
    rejects: list[dict[str, Any]]
    groups: pd.DataFrame  # GROUP_COLUMNS, one row per file that entered
    pairs: pd.DataFrame  # PAIR_COLUMNS, near pairs up to threshold + SHEET_MARGIN
    summary: dict[str, Any] = field(default_factory=dict)


def _labels_text(row: pd.Series) -> str:
    return f"{row.age}/{row.sex}/{row.race}"


def deduplicate(
    manifest: pd.DataFrame,
    images: str | os.PathLike,
    exact: str = "drop_conflicts",
    near: str = "drop_conflicts",
    threshold: int = DEFAULT_THRESHOLD,
    progress: bool = False,
) -> Dedup:
    """Apply the exact then the near-duplicate policy to ``manifest`` (files in ``images``)."""
    if near not in NEAR_POLICIES:
        raise ValueError(f"download.near_duplicates must be one of {NEAR_POLICIES}, got {near!r}")
    if not 0 <= int(threshold) <= HASH_BITS:
        raise ValueError(f"download.near_threshold must be 0-{HASH_BITS}, got {threshold}")
    threshold = int(threshold)
    images = Path(images)
    m = manifest.sort_values("file", kind="stable").reset_index(drop=True)
    stats: dict[str, Any] = exact_stats(m)
    kept, rejects = exact_duplicates(m, exact)
    kept = kept.sort_values("file", kind="stable").reset_index(drop=True)
    action = {r["file"]: r["reason"] for r in rejects}

    files = m["file"].tolist()
    uf = _UnionFind(files)
    kind: dict[str, set[str]] = {f: set() for f in files}
    for _, g in m[m["sha256"].duplicated(keep=False)].groupby("sha256"):
        names = g["file"].tolist()
        for other in names[1:]:
            uf.union(names[0], other)
        for f in names:
            kind[f].add("exact")

    phash_hex = dict.fromkeys(files, "")
    pairs = _pairs_frame([])
    near_rejects: list[dict[str, Any]] = []
    n_undecodable = 0
    near_stats: dict[str, Any] = {}
    if near != "off" and len(kept):
        # one node per distinct content among the kept files (byte copies share a hash)
        nodes = kept.drop_duplicates("sha256", keep="first").reset_index(drop=True)
        bits, ok = phashes([images / f for f in nodes["file"]], progress=progress)
        n_undecodable = int((~ok).sum())
        sha_hex = {s: to_hex(b) for s, b, o in zip(nodes["sha256"], bits, ok, strict=True) if o}
        for f, s in zip(kept["file"], kept["sha256"], strict=True):
            phash_hex[f] = sha_hex.get(s, "")
        idx = np.nonzero(ok)[0]
        raw = near_pairs(bits[idx], threshold + SHEET_MARGIN)
        raw[:, 0], raw[:, 1] = idx[raw[:, 0]], idx[raw[:, 1]]
        lab = nodes.set_index("file")
        rows = []
        for i, j, d in raw.tolist():
            a, b = nodes["file"].iat[i], nodes["file"].iat[j]
            rows.append(
                (a, b, d, d <= threshold, _labels_text(lab.loc[a]), _labels_text(lab.loc[b]))
            )
        pairs = _pairs_frame(rows)
        close = pairs.loc[pairs["near"]]
        for a, b in zip(close["file_a"], close["file_b"], strict=True):
            uf.union(a, b)
        # every byte copy of a node is linked to it already (exact union above)
        near_files = set(close["file_a"]) | set(close["file_b"])
        by_sha = kept.groupby("sha256")["file"].apply(list).to_dict()
        sha_of = dict(zip(kept["file"], kept["sha256"], strict=True))
        for f in near_files:
            for g in by_sha[sha_of[f]]:
                kind[g].add("near")
        near_rejects, near_stats = _near_policy(kept, close, uf, near, threshold)
        for r in near_rejects:
            action[r["file"]] = r["reason"]
        dropped = {r["file"] for r in near_rejects}
        kept = kept[~kept["file"].isin(dropped)].reset_index(drop=True)

    roots = {f: uf.find(f) for f in files}
    size = pd.Series(roots).value_counts()
    groups = pd.DataFrame(
        {
            "file": files,
            "group": [roots[f] for f in files],
            "group_size": [int(size[roots[f]]) for f in files],
            "kind": ["+".join(sorted(kind[f])) for f in files],
            "phash": [phash_hex[f] for f in files],
            "action": [action.get(f, "kept") for f in files],
        }
    )
    multi = groups[groups["group_size"] > 1]
    all_rejects = rejects + near_rejects
    summary = {
        "duplicates_policy": exact,
        "near_duplicates_policy": near,
        "near_threshold": threshold,
        "phash": f"{HASH_BITS}-bit DCT pHash of a {HASH_SIDE}x{HASH_SIDE} grey thumbnail",
        **stats,
        **near_stats,
        "n_undecodable": n_undecodable,
        "groups": int(multi["group"].nunique()),
        "files_in_groups": len(multi),
        "kept_in_groups": int((multi["action"] == "kept").sum()),
        "rejected": {
            reason: sum(r["reason"] == reason for r in all_rejects)
            for reason in sorted({r["reason"] for r in all_rejects})
        },
    }
    return Dedup(kept, all_rejects, groups, pairs, summary)


def _pairs_frame(rows: list[tuple]) -> pd.DataFrame:
    pairs = pd.DataFrame(rows, columns=PAIR_COLUMNS)
    return pairs.astype({"distance": "int64", "near": "bool"})


def _near_policy(
    kept: pd.DataFrame, close: pd.DataFrame, uf: _UnionFind, policy: str, threshold: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Reject rows for near-duplicate groups among ``kept`` (byte copies count as one)."""
    k = kept.assign(root=kept["file"].map(uf.find))
    k = k[k["root"].duplicated(keep=False)]  # only groups of several files
    linked = set(close["file_a"]) | set(close["file_b"])
    dist: dict[frozenset[str], int] = {
        frozenset((a, b)): int(d)
        for a, b, d in zip(close["file_a"], close["file_b"], close["distance"], strict=True)
    }
    rejects: list[dict[str, Any]] = []
    n_groups = n_conflicts = 0
    for _, g in k.groupby("root", sort=True):
        if g["sha256"].nunique() < 2 or not (set(g["file"]) & linked):
            continue  # a single content (byte copies only): the exact policy decided
        n_groups += 1
        g = g.sort_values("file", kind="stable")
        conflict = len(g[LABELS].drop_duplicates()) > 1
        n_conflicts += conflict
        if policy == "keep_all":
            continue
        first = g["file"].iat[0]
        first_sha = g["sha256"].iat[0]
        for f, s, lab in zip(
            g["file"], g["sha256"], g[LABELS].itertuples(index=False), strict=True
        ):
            if conflict and policy == "drop_conflicts":
                others = ", ".join(
                    f"{o} ({a}/{b}/{c})"
                    for o, (a, b, c) in zip(
                        g["file"], g[LABELS].itertuples(index=False), strict=True
                    )
                    if o != f
                )
                rejects.append(
                    {
                        "file": f,
                        "stage": "download",
                        "reason": "near_duplicate_label_conflict",
                        "detail": f"near copies (pHash distance <= {threshold}) with other "
                        f"labels: {others}",
                    }
                )
            elif s != first_sha:
                d = dist.get(frozenset((f, first)))
                how = f"pHash distance {d}" if d is not None else f"linked within {threshold}"
                rejects.append(
                    {
                        "file": f,
                        "stage": "download",
                        "reason": "near_duplicate",
                        "detail": f"near copy of {first} ({how}; labels "
                        f"{lab.age}/{lab.sex}/{lab.race}), kept",
                    }
                )
    stats = {
        "near_pairs": len(close),
        "near_groups": n_groups,
        "near_conflict_groups": n_conflicts,
    }
    return rejects, stats
