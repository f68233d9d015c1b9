"""The ``split`` stage: one group-aware train/val/test split (stratified by default) for every condition.

Strata are sex x race x age bucket (the paper's seven groups). **Groups** are sets of files that
must not be separated: byte-identical or near-identical copies of one photo (the ``group``
column of ``data/download/groups.csv``, see :mod:`maskprivacy.datasets.dedup`). A group falls whole into
one part, so no copy of a test photo is trained on.

Within each stratum (a group belongs to the stratum of most of its files) the groups are
shuffled with the seed; the groups of several files are placed first, each in a part drawn with
probability proportional to the room left there, and single files then fill the parts in order
(train, val, test) up to their largest-remainder share of the stratum. Without groups of several
files this is exactly a seeded shuffle cut by the largest-remainder method. Strata too small to
cut are pooled and cut together. The split is keyed by image file name, so the unmasked and
masked versions of an image always fall in the same part.

``split.method: uniform`` is the authors' own split instead (:func:`uniform_split`: within each
sex, ordered by race, age and name, runs of 10 cut 8 / 1 / 1, no randomness); ``random`` a
seeded shuffle. Both keep groups on one side afterwards (:func:`keep_groups_together`), and the
stage reports how many images that moved.

The stage also writes the data report (``results/data/report.json`` and ``labels.png``, see
:mod:`maskprivacy.report.data`): the split is where the final data set is known.
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
    """The paper's "uniform" split, as the authors built it (no randomness; ``seed`` is unused).

    Within each sex, the images are ordered by race code, then age, then file name, and cut into
    consecutive runs of ``run_length`` that carry on across race boundaries (a run may hold the
    last images of one race and the first of the next). In each run the first places go to
    train, the next to validation, the last to test, as many of each as the fractions give for
    a full run (8 / 1 / 1 for runs of 10 at 0.8 / 0.1 / 0.1). The last run of a sex, when
    shorter than ``run_length``, goes to train whole.
    """
    _check_fractions(fractions)
    if int(run_length) != run_length or run_length < 1:
        raise ValueError(f"run_length must be a positive integer, got {run_length!r}")
    places = np.repeat(PARTS, _cut(int(run_length), fractions))
    ordered = table.sort_values(["sex", "race", "age", "file"], kind="stable")
    part = pd.Series(index=ordered.index, dtype=object)
    for _, rows in ordered.groupby("sex", sort=True):
        n = len(rows)
        full = n - n % run_length
        labels = np.concatenate([np.tile(places, full // run_length), ["train"] * (n - full)])
        part[rows.index] = labels
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


def keep_groups_together(part: pd.Series, files: pd.Series, groups: pd.Series) -> pd.Series:
    """Move every member of a group to the part of the group's first file (by name).

    ``part``, ``files`` and ``groups`` share one index; ``groups`` holds a group id per row (rows
    with the same id must not be separated: copies of one photo, or any other grouping a caller
    builds); a missing id leaves its row where it is. Returns the new parts; the number of rows
    it moved is ``(new != part).sum()`` (:func:`moved`).
    """
    frame = pd.DataFrame({"file": files, "group": groups, "part": part})
    first = frame.sort_values("file", kind="stable").groupby("group")["part"].first()
    return frame["group"].map(first).where(frame["group"].notna(), part)


def moved(before: pd.Series, after: pd.Series) -> int:
    """How many rows changed part."""
    return int((before != after).sum())


METHODS = ("stratified", "uniform", "random")


def split_by(
    method: str,
    table: pd.DataFrame,
    fractions: tuple[float, float, float],
    seed: int,
    group: str = "group",
) -> tuple[pd.Series, int]:
    """Dispatch on ``split.method``; every method keeps the groups of column ``group`` together.

    Returns the parts and how many images the group-keeping moved away from the part the method
    gave them (``stratified`` places whole groups itself, so it moves none).
    """
    if method == "stratified":
        return stratified_split(table, fractions, seed, group=group), 0
    if method == "uniform":
        part = uniform_split(table, fractions, seed)
    elif method == "random":
        part = random_split(table, fractions, seed)
    else:
        raise ValueError(f"split.method must be one of {METHODS}, not {method!r}")
    if group not in table.columns:
        return part, 0
    kept = keep_groups_together(part, table["file"], table[group])
    return kept, moved(part, kept)


def run(
    cfg: dict,
    manifest: pd.DataFrame,
    present: list[set[str]],
    groups: pd.DataFrame | None = None,
    rejected: set[str] | frozenset[str] = frozenset(),
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Split the images that every condition has; the others go to rejects.

    ``present`` holds, per condition, the set of file names that made it through its stages;
    ``groups`` (columns ``file`` and ``group``) the duplicate groups of the download stage;
    ``rejected`` the names an earlier stage rejected (with its own reason: a face one mask set
    could not draw is that set's reject, not also the split's).
    """
    from maskprivacy.core.io import rejects_frame

    common = set.intersection(*present) if present else set(manifest["file"])
    keep = manifest[manifest["file"].isin(common)].copy()
    if groups is not None and len(groups):
        gmap = groups.set_index("file")["group"]
        keep["group"] = keep["file"].map(gmap).fillna(keep["file"])
    else:
        keep["group"] = keep["file"]
    method = str(cfg.get("method", "stratified"))
    keep["split"], n_moved = split_by(method, keep, tuple(cfg["fractions"]), int(cfg["seed"]))
    union = set.union(*present) if present else set()
    missing = sorted(union - common - set(rejected))
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
        # images that keeping groups on one side moved from the part the method gave them
        "files_moved_to_keep_groups": n_moved,
    }
    return out, rejects, summary
