"""Exact and near duplicates: the perceptual hash, the search, the policies, and a split that no
near-duplicate pair crosses, all on images the tests make."""

from __future__ import annotations

import io
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageEnhance, ImageFilter
from test_download import download_run

from maskprivacy.core.io import read_table
from maskprivacy.core.labels import age_bucket, utk_name
from maskprivacy.datasets import split
from maskprivacy.datasets.dedup import (
    DEFAULT_THRESHOLD,
    HASH_BITS,
    deduplicate,
    from_hex,
    hamming,
    near_pairs,
    phash_bits,
    to_hex,
)
from maskprivacy.datasets.ingest import ingest, list_images


def base_image(seed: int, side: int = 200) -> Image.Image:
    """A distinct picture per seed: random colour blobs (pHash distance ~127 between seeds)."""
    rng = np.random.default_rng(seed)
    blobs = rng.integers(30, 226, (16, 16, 3), dtype=np.uint8)
    return Image.fromarray(blobs).resize((side, side), Image.Resampling.BICUBIC)


def near_copy(img: Image.Image, how: int) -> Image.Image:
    """The same picture processed again: re-encoded, brighter, cropped, blurred or resized."""
    w, h = img.size
    if how == 0:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=40)
        return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    if how == 1:
        return ImageEnhance.Brightness(img).enhance(1.1)
    if how == 2:
        return img.crop((2, 2, w - 2, h - 2)).resize((w, h))
    if how == 3:
        return img.filter(ImageFilter.GaussianBlur(1))
    return img.resize((120, 120)).resize((w, h))


def save(img: Image.Image, path: Path) -> None:
    img.save(path, format="JPEG", quality=92)


def make_set(
    folder: Path, n_base: int, n_near: int, n_exact: int, seed: int = 0
) -> tuple[list[str], list[tuple[str, str]]]:
    """UTKFace-named images: ``n_base`` distinct pictures, ``n_near`` near copies (half with
    other labels) and ``n_exact`` byte copies. Returns the names and the planted pairs."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names, planted = [], []
    stamp = 20170101000000000
    bases = []
    for i in range(n_base):
        age, sex, race = int(rng.integers(1, 90)), int(rng.integers(0, 2)), int(rng.integers(0, 5))
        name = utk_name(age, sex, race, stamp + i)
        save(base_image(seed * 10_000 + i), folder / name)
        names.append(name)
        bases.append((name, (age, sex, race), base_image(seed * 10_000 + i)))
    for k in range(n_near):
        name0, (age, sex, race), img = bases[k]
        if k % 2:
            age = age + 1 + k % 3  # the same photo under another age
        name = utk_name(age, sex, race, stamp + 5000 + k)
        save(near_copy(img, k % 5), folder / name)
        names.append(name)
        planted.append((name0, name))
    for k in range(n_exact):
        name0, (age, sex, race), _ = bases[n_near + k]
        name = utk_name(age if k % 2 else (age + 7) % 90, sex, race, stamp + 8000 + k)
        (folder / name).write_bytes((folder / name0).read_bytes())
        names.append(name)
        planted.append((name0, name))
    return names, planted


def ingest_folder(folder: Path, tmp: Path) -> pd.DataFrame:
    files = list_images(folder)
    manifest, rejects = ingest(files, tmp / "images", None, "t", progress=False)
    assert rejects.empty
    return manifest


# --------------------------------------------------------------------------------------------
# hash and search
# --------------------------------------------------------------------------------------------


def test_phash_basics(tmp_path):
    a, b = tmp_path / "a.jpg", tmp_path / "b.png"
    save(base_image(1), a)
    base_image(1).save(b)
    ha, hb = phash_bits(a), phash_bits(b)
    assert ha.shape == (HASH_BITS,) and ha.sum() == (HASH_BITS - 1) // 2  # 127 ones: even distances
    assert hamming(ha, hb) <= 4  # JPEG or PNG of one picture
    assert hamming(ha, phash_bits(io.BytesIO(_jpeg(base_image(2))))) > 80
    assert (from_hex(to_hex(ha)) == ha).all() and len(to_hex(ha)) == 64
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(a.read_bytes()[:200])
    assert phash_bits(bad) is None
    (tmp_path / "text.jpg").write_text("not an image")
    assert phash_bits(tmp_path / "text.jpg") is None


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def test_near_copies_are_close_and_distinct_pictures_far():
    for seed in range(6):
        img = base_image(seed)
        h = phash_bits(io.BytesIO(_jpeg(img)))
        for how in range(5):
            d = hamming(h, phash_bits(io.BytesIO(_jpeg(near_copy(img, how)))))
            assert d <= DEFAULT_THRESHOLD - 10, (seed, how, d)
    hashes = [phash_bits(io.BytesIO(_jpeg(base_image(s)))) for s in range(30)]
    assert min(hamming(a, b) for a, b in combinations(hashes, 2)) > DEFAULT_THRESHOLD + 20


def test_near_pairs_equals_brute_force():
    rng = np.random.default_rng(0)
    bits = rng.random((300, HASH_BITS)) < 0.5
    for k in range(0, 60, 2):  # plant close rows
        flip = rng.choice(HASH_BITS, size=k % 50, replace=False)
        bits[k + 1] = bits[k]
        bits[k + 1, flip] ^= True
    radius = 30
    got = near_pairs(bits, radius, chunk=64)
    want = [
        (i, j, int((bits[i] != bits[j]).sum()))
        for i, j in combinations(range(len(bits)), 2)
        if (bits[i] != bits[j]).sum() <= radius
    ]
    assert [tuple(r) for r in got.tolist()] == want
    assert len(want) >= 15
    assert near_pairs(bits[:1], radius).shape == (0, 3)


# --------------------------------------------------------------------------------------------
# policies
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("planted")
    names, pairs = make_set(folder / "in", n_base=40, n_near=10, n_exact=4)
    manifest = ingest_folder(folder / "in", folder)
    return folder / "images", manifest, pairs


def test_keep_all_finds_exactly_the_planted_groups(planted):
    images, manifest, pairs = planted
    dd = deduplicate(manifest, images, "keep_all", "keep_all", DEFAULT_THRESHOLD)
    assert len(dd.manifest) == len(manifest) and dd.rejects == []
    g = dd.groups.set_index("file")
    multi = dd.groups[dd.groups["group_size"] > 1]
    assert len(multi) == 2 * len(pairs)  # every planted pair, nothing else
    for a, b in pairs:
        assert g.loc[a, "group"] == g.loc[b, "group"] == min(a, b)
    near = dd.pairs[dd.pairs["near"]]
    assert {frozenset(p) for p in zip(near.file_a, near.file_b, strict=True)} == {
        frozenset(p) for p in pairs[:10]
    }
    assert (dd.pairs.loc[~dd.pairs["near"], "distance"] > DEFAULT_THRESHOLD).all()
    s = dd.summary
    assert s["exact_copies"] == 4 and s["exact_copies_other_labels"] == 2
    assert s["near_pairs"] == 10 and s["near_groups"] == 10 and s["near_conflict_groups"] == 5
    assert s["groups"] == 14 and s["files_in_groups"] == 28
    assert set(g.loc[[b for _, b in pairs[:10]], "kind"]) == {"near"}
    assert set(g.loc[[b for _, b in pairs[10:]], "kind"]) == {"exact"}
    assert g["phash"].str.len().eq(64).all()


def test_keep_one_and_drop_conflicts(planted):
    images, manifest, pairs = planted
    lab = manifest.set_index("file")[["age", "sex", "race"]]
    same = [p for p in pairs if (lab.loc[p[0]] == lab.loc[p[1]]).all()]
    other = [p for p in pairs if p not in same]
    dd = deduplicate(manifest, images, "keep_one", "keep_one", DEFAULT_THRESHOLD)
    assert len(dd.manifest) == len(manifest) - len(pairs)
    assert {r["file"] for r in dd.rejects} == {max(p) for p in pairs}
    assert {r["reason"] for r in dd.rejects} == {"duplicate_bytes", "near_duplicate"}

    dd = deduplicate(manifest, images, "drop_conflicts", "drop_conflicts", DEFAULT_THRESHOLD)
    dropped = {r["file"]: r["reason"] for r in dd.rejects}
    assert set(dropped) == {f for p in other for f in p} | {max(p) for p in same}
    for a, b in other:
        assert dropped[a].endswith("label_conflict") and dropped[b].endswith("label_conflict")
    assert set(dd.manifest["file"]) | set(dropped) == set(manifest["file"])
    acts = dd.groups.set_index("file")["action"]
    assert (acts[list(dropped)] == pd.Series(dropped)).all()


def test_off_hashes_nothing_and_undecodable_files_stay_single(planted, tmp_path):
    images, manifest, pairs = planted
    dd = deduplicate(manifest, images, "keep_all", "off", DEFAULT_THRESHOLD)
    assert dd.pairs.empty and (dd.groups["phash"] == "").all()
    assert (dd.groups["group_size"] > 1).sum() == 8  # the byte copies only

    folder = tmp_path / "in"
    folder.mkdir()
    good = utk_name(30, 0, 1, 20170101000000001)
    save(base_image(5), folder / good)
    (folder / utk_name(31, 0, 1, 20170101000000002)).write_bytes(b"text, not a JPEG")
    (folder / utk_name(32, 0, 1, 20170101000000003)).write_bytes(b"")
    m = ingest_folder(folder, tmp_path)
    dd = deduplicate(m, tmp_path / "images", "drop_conflicts", "drop_conflicts", 44)
    assert len(dd.manifest) == 3 and dd.summary["n_undecodable"] == 2
    assert (dd.groups["group_size"] == 1).all()


def test_bad_policy_or_threshold():
    m = pd.DataFrame(columns=["file", "age", "sex", "race", "sha256"])
    with pytest.raises(ValueError, match="near_duplicates"):
        deduplicate(m, ".", "keep_all", "maybe")
    with pytest.raises(ValueError, match="near_threshold"):
        deduplicate(m, ".", "keep_all", "keep_all", 300)


# --------------------------------------------------------------------------------------------
# the split never separates a near-duplicate pair
# --------------------------------------------------------------------------------------------


def test_no_near_duplicate_pair_crosses_the_split(tmp_path):
    names, pairs = make_set(tmp_path / "in", n_base=240, n_near=80, n_exact=20, seed=3)
    out = tmp_path / "out"
    cfg = {
        "source": "path",
        "path": str(tmp_path / "in"),
        "duplicates": "keep_all",
        "near_duplicates": "keep_all",  # keep every copy: the split alone must keep them apart
        "near_threshold": DEFAULT_THRESHOLD,
    }
    download_run(
        cfg,
        out / "images",
        out / "manifest.csv",
        out / "rejects.csv",
        groups=out / "groups.csv",
        pairs=out / "pairs.csv",
        sheet=out / "sheet.png",
    )
    manifest, groups = read_table(out / "manifest.csv"), read_table(out / "groups.csv")
    assert len(manifest) == len(names)
    table, _, summary = split.run(
        {"fractions": [0.6, 0.2, 0.2], "seed": 1}, manifest, [set(manifest["file"])], groups
    )
    part = table.set_index("file")["split"]
    # every pair within the threshold, found independently by brute force on the files
    hashes = {f: phash_bits(out / "images" / f) for f in manifest["file"]}
    close = [
        (a, b)
        for a, b in combinations(sorted(hashes), 2)
        if hamming(hashes[a], hashes[b]) <= DEFAULT_THRESHOLD
    ]
    assert {frozenset(p) for p in close} >= {frozenset(p) for p in pairs}
    assert all(part[a] == part[b] for a, b in close)
    counts = table["split"].value_counts()
    assert abs(counts["test"] / len(table) - 0.2) < 0.05
    assert summary["groups_with_several_files"] == len(pairs)
    with Image.open(out / "sheet.png") as im:
        assert im.width > 400 and im.height > 300


def test_group_column_keeps_groups_whole_under_every_seed():
    rng = np.random.default_rng(0)
    n = 600
    t = pd.DataFrame(
        {
            "file": [f"{i:04d}.jpg" for i in range(n)],
            "sex": rng.integers(0, 2, n),
            "race": rng.integers(0, 5, n),
            "age": rng.integers(0, 90, n),
        }
    )
    t["age_bucket"] = t["age"].map(age_bucket)
    t["group"] = [f"g{int(x)}" for x in rng.integers(0, 380, n)]  # groups of 1-6
    for seed in range(5):
        part = split.stratified_split(t, (0.8, 0.1, 0.1), seed=seed)
        assert (t.assign(part=part).groupby("group")["part"].nunique() == 1).all()
        share = part.value_counts(normalize=True)
        assert abs(share["train"] - 0.8) < 0.05 and abs(share["test"] - 0.1) < 0.04
