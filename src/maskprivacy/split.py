"""The ``split`` stage: one seeded, stratified, group-aware train/val/test split for every condition.

Strata are sex x race x age bucket (the paper's seven groups). **Groups** are sets of files that
must not be separated: byte-identical or near-identical copies of one photo (the ``group``
column of ``data/download/groups.csv``, see :mod:`maskprivacy.dedup`). A group falls whole into
one part, so no copy of a test photo is trained on.

Within each stratum (a group belongs to the stratum of most of its files) the groups are
shuffled with the seed; the groups of several files are placed first, each in a part drawn with
probability proportional to the room left there, and single files then fill the parts in order
(train, val, test) up to their largest-remainder share of the stratum. Without groups of several
files this is exactly a seeded shuffle cut by the largest-remainder method. Strata too small to
cut are pooled and cut together. The split is keyed by image file name, so the unmasked and
masked versions of an image always fall in the same part.

The stage also writes the data report (``results/data/report.json`` and ``labels.png``, see
:mod:`maskprivacy.report`): the split is where the final data set is known.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PARTS = ("train", "val", "test")


def _cut(n: int, fractions: tuple[float, float, float]) -> list[int]:
    """Whole counts per part summing to n, by the largest-remainder method."""
    raw = np.array(fractions) * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def stratified_split(
    table: pd.DataFrame,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    strata: tuple[str, ...] = ("sex", "race", "age_bucket"),
    min_stratum: int | None = None,
    group: str | None = "group",
) -> pd.Series:
    """A Series (indexed like ``table``) naming each row's part: train, val or test.

    Rows with the same value in column ``group`` (when ``table`` has it) share a part.
    """
    if not np.isclose(sum(fractions), 1.0) or min(fractions) < 0:
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
    if min_stratum is None:
        nonzero = [f for f in fractions if f > 0]
        min_stratum = int(np.ceil(1 / min(nonzero))) if nonzero else 1
    rng = np.random.default_rng(seed)
    # Sort first so that the result does not depend on the input row order.
    ordered = table.sort_values("file", kind="stable")
    keys = ordered[list(strata)].astype(str).agg("|".join, axis=1)
    if group and group in ordered.columns:
        gid = ordered[group].astype(str).where(ordered[group].notna(), ordered["file"])
    else:
        gid = ordered["file"].astype(str)
    # a group's stratum: the key of most of its files (ties: the smallest key)
    gkey = (
        pd.DataFrame({"g": gid, "k": keys})
        .groupby(["g", "k"])
        .size()
        .reset_index(name="n")
        .sort_values(["g", "n", "k"], ascending=[True, False, True], kind="stable")
        .drop_duplicates("g")
        .set_index("g")["k"]
    )
    keys = gid.map(gkey)
    sizes = keys.map(keys.value_counts())
    keys = keys.where(sizes >= min_stratum, "__pooled__")
    part = pd.Series(index=ordered.index, dtype=object)
    for key in sorted(keys.unique()):
        rows = ordered.index[keys == key]
        g = gid[rows]
        # groups in order of their first file (the table is sorted by file)
        first = ~g.duplicated()
        names = g[first].tolist()
        members = {n: [] for n in names}
        for idx, n in zip(rows, g, strict=True):
            members[n].append(idx)
        names = [names[i] for i in rng.permutation(len(names))]
        room = np.array(_cut(len(rows), fractions), dtype=float)
        big = [n for n in names if len(members[n]) > 1]
        # largest groups first (stable: shuffled order within a size)
        big.sort(key=lambda n: -len(members[n]))
        for n in big:
            size = len(members[n])
            fits = room >= size
            weights = np.where(fits, room, 0) if fits.any() else (room == room.max()).astype(float)
            p = int(rng.choice(len(PARTS), p=weights / weights.sum()))
            part[members[n]] = PARTS[p]
            room[p] -= size
        singles = [members[n][0] for n in names if len(members[n]) == 1]
        start = 0
        for p, name in enumerate(PARTS):
            count = int(max(room[p], 0)) if p < len(PARTS) - 1 else len(singles) - start
            part[singles[start : start + count]] = name
            start += count
    return part.reindex(table.index)


def uniform_split(
    table: pd.DataFrame,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    run_length: int = 10,
) -> pd.Series:
    """The paper's "uniform" split: within each sex, then race, the images sorted by age are cut
    into consecutive runs of ``run_length`` and each run is divided train/val/test by the
    fractions (8/1/1 for runs of 10), the places in a run drawn with the seed."""
    _check_fractions(fractions)
    rng = np.random.default_rng(seed)
    ordered = table.sort_values(["sex", "race", "age", "file"], kind="stable")
    part = pd.Series(index=ordered.index, dtype=object)
    for _, group in ordered.groupby(["sex", "race"], sort=True):
        idx = group.index.to_numpy()
        for start in range(0, len(idx), run_length):
            run = idx[start : start + run_length]
            labels = np.repeat(PARTS, _cut(len(run), fractions))
            part[run] = labels[rng.permutation(len(run))]
    return part.reindex(table.index)


def random_split(
    table: pd.DataFrame, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0
) -> pd.Series:
    """A seeded random split by the fractions (no stratification), independent of row order."""
    _check_fractions(fractions)
    ordered = table.sort_values("file", kind="stable")
    idx = ordered.index.to_numpy()[np.random.default_rng(seed).permutation(len(ordered))]
    part = pd.Series(index=ordered.index, dtype=object)
    part[idx] = np.repeat(PARTS, _cut(len(idx), fractions))
    return part.reindex(table.index)


def _check_fractions(fractions: tuple[float, float, float]) -> None:
    if not np.isclose(sum(fractions), 1.0) or min(fractions) < 0:
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {fractions}")


def keep_groups_together(table: pd.DataFrame, part: pd.Series, group: str = "group") -> pd.Series:
    """Move every member of a duplicate group to the part of its first file (by name)."""
    if group not in table.columns:
        return part
    first = (
        table.assign(part=part).sort_values("file", kind="stable").groupby(group)["part"].first()
    )
    return table[group].map(first).where(table[group].notna(), part)


METHODS = ("stratified", "uniform", "random")


def split_by(
    method: str, table: pd.DataFrame, fractions: tuple[float, float, float], seed: int
) -> pd.Series:
    """Dispatch on ``split.method``; every method is seeded and keeps duplicate groups together."""
    if method == "stratified":
        return stratified_split(table, fractions, seed)
    if method == "uniform":
        return keep_groups_together(table, uniform_split(table, fractions, seed))
    if method == "random":
        return keep_groups_together(table, random_split(table, fractions, seed))
    raise ValueError(f"split.method must be one of {METHODS}, not {method!r}")


def run(
    cfg: dict,
    manifest: pd.DataFrame,
    present: list[set[str]],
    groups: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Split the images that every condition has; the others go to rejects.

    ``present`` holds, per condition, the set of file names that made it through its stages;
    ``groups`` (columns ``file`` and ``group``) the duplicate groups of the download stage.
    """
    from .io import rejects_frame

    common = set.intersection(*present) if present else set(manifest["file"])
    keep = manifest[manifest["file"].isin(common)].copy()
    if groups is not None and len(groups):
        gmap = groups.set_index("file")["group"]
        keep["group"] = keep["file"].map(gmap).fillna(keep["file"])
    else:
        keep["group"] = keep["file"]
    method = str(cfg.get("method", "stratified"))
    keep["split"] = split_by(method, keep, tuple(cfg["fractions"]), int(cfg["seed"]))
    union = set.union(*present) if present else set()
    missing = sorted(union - common)
    rejects = rejects_frame(
        [
            {
                "file": f,
                "stage": "split",
                "reason": "not_in_every_condition",
                "detail": "missing from at least one condition, so it cannot be paired",
            }
            for f in missing
        ]
    )
    cols = ["file", "age", "sex", "race", "age_bucket", "group", "split"]
    out = keep[cols].sort_values("file", kind="stable").reset_index(drop=True)
    multi = out.groupby("group")["file"].transform("size") > 1
    crossing = int((out[multi].groupby("group")["split"].nunique() > 1).sum())
    if crossing:  # pragma: no cover - the algorithm never does this
        raise AssertionError(f"{crossing} duplicate group(s) straddle split parts")
    summary = {
        "method": method,
        "n_images": len(out),
        "counts": out["split"].value_counts().reindex(PARTS, fill_value=0).to_dict(),
        "n_rejects": len(rejects),
        "groups_with_several_files": int(out.loc[multi, "group"].nunique()),
        "files_in_such_groups": int(multi.sum()),
    }
    return out, rejects, summary
