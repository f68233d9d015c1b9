import numpy as np
import pandas as pd
import pytest

from maskprivacy.datasets.split import run, stratified_split


def table(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    age = rng.integers(0, 90, n)
    return pd.DataFrame(
        {
            "file": [f"{i:05d}.jpg" for i in range(n)],
            "age": age,
            "sex": rng.integers(0, 2, n),
            "race": rng.choice(5, n, p=[0.45, 0.2, 0.15, 0.15, 0.05]),
            "age_bucket": np.digitize(age, [4, 13, 20, 31, 46, 61]),
        }
    )


def test_fractions_and_strata_are_kept():
    t = table()
    part = stratified_split(t, (0.8, 0.1, 0.1), seed=1)
    counts = part.value_counts()
    assert abs(counts["train"] - 1600) <= 20 and abs(counts["test"] - 200) <= 20
    # every sizeable stratum is split in proportion (largest remainder: within one image each)
    for _, g in t.assign(part=part).groupby(["sex", "race", "age_bucket"]):
        if len(g) >= 30:
            share = g["part"].value_counts(normalize=True)
            assert abs(share.get("test", 0) - 0.1) <= 1 / len(g) + 1e-9
            assert abs(share.get("train", 0) - 0.8) <= 1 / len(g) + 1e-9


def test_deterministic_and_order_free():
    t = table()
    a = stratified_split(t, seed=5)
    b = stratified_split(t.sample(frac=1, random_state=3), seed=5).reindex(t.index)
    assert a.equals(b)
    assert not a.equals(stratified_split(t, seed=6))


def test_every_row_gets_exactly_one_part():
    t = table(137)
    part = stratified_split(t, (0.7, 0.15, 0.15), seed=0)
    assert part.notna().all() and set(part) <= {"train", "val", "test"}


def test_bad_fractions_raise():
    with pytest.raises(ValueError, match="sum to 1"):
        stratified_split(table(10), (0.5, 0.1, 0.1))


def test_run_keeps_only_images_every_condition_has():
    t = table(50)
    present = [set(t["file"]), set(t["file"][:45])]
    out, rejects, summary = run({"fractions": [0.8, 0.1, 0.1], "seed": 0}, t, present)
    assert len(out) == 45 and len(rejects) == 5
    assert set(rejects["reason"]) == {"not_in_every_condition"}
    assert set(out["file"]) | set(rejects["file"]) == set(t["file"])


def test_without_groups_is_the_plain_stratified_split():
    t = table(500)
    plain = stratified_split(t, seed=4, group=None)
    assert plain.equals(stratified_split(t.assign(group=t["file"]), seed=4))
    assert plain.equals(stratified_split(t, seed=4))


def test_a_group_with_mixed_labels_stays_whole():
    t = table(300)
    t["group"] = t["file"]
    t.loc[:9, "group"] = "big"  # ten files, assorted labels, one photo
    for seed in range(10):
        part = stratified_split(t, seed=seed)
        assert part[:10].nunique() == 1


def test_run_adds_the_group_column_and_counts_groups():
    t = table(60)
    groups = pd.DataFrame({"file": t["file"], "group": t["file"]})
    groups.loc[:3, "group"] = "g"
    out, _, summary = run({"fractions": [0.8, 0.1, 0.1], "seed": 0}, t, [set(t["file"])], groups)
    assert list(out.columns) == ["file", "age", "sex", "race", "age_bucket", "group", "split"]
    assert out.loc[out["group"] == "g", "split"].nunique() == 1
    assert summary["groups_with_several_files"] == 1 and summary["files_in_such_groups"] == 4


def test_data_report_accounts_for_every_file(tmp_path):
    from PIL import Image

    from maskprivacy.report.data import data_report, write_data_report

    t = table(100)
    groups = pd.DataFrame({"file": t["file"], "group": t["file"]})
    groups.loc[:1, "group"] = "g"
    out, split_rejects, _ = run(
        {"fractions": [0.8, 0.1, 0.1], "seed": 0}, t, [set(t["file"]), set(t["file"][:95])], groups
    )
    download_rejects = pd.DataFrame(
        [["x.jpg", "download", "label_defect", "no race field"]] * 3,
        columns=["file", "stage", "reason", "detail"],
    )
    summary = {
        "source": "path",
        "n_inputs": 103,
        "verification": {"status": "verified", "n_verified": 103},
        "label_defects": [{"file": "x.jpg", "defect": "missing_field", "action": "dropped"}],
        "duplicates": {"exact_copies": 0},
    }
    rep = data_report(summary, out, [download_rejects, split_rejects], groups)
    assert rep["accounting"] == {"found": 103, "final": 95, "rejected": 8, "balanced": True}
    assert rep["rejected_by_reason"] == {
        "download/label_defect": 3,
        "split/not_in_every_condition": 5,
    }
    assert sum(rep["final"]["sex"].values()) == 95
    assert list(rep["final"]["race"]) == ["White", "Black", "Asian", "Indian", "Others"]
    assert len(rep["final"]["age_bucket"]) == 7 and "Baby (0-3)" in rep["final"]["age_bucket"]
    assert sum(rep["final"]["by_split"][p]["n_images"] for p in ("train", "val", "test")) == 95
    assert rep["duplicates"]["groups_across_split_parts"] == 0
    write_data_report(rep, tmp_path / "report.json", tmp_path / "labels.png")
    with Image.open(tmp_path / "labels.png") as im:
        assert im.width > 600


# ---------------------------------------------------------------- the paper's uniform split, random


def paper_table() -> pd.DataFrame:
    """A hand-made table for the paper's uniform split (rows deliberately out of order)."""
    men = [  # (file, race, age)
        ("m_c.jpg", 0, 30),
        ("m_j.jpg", 3, 60),
        ("m_a.jpg", 0, 25),
        ("m_l.jpg", 4, 2),
        ("m_e.jpg", 1, 5),
        ("m_b.jpg", 0, 30),
        ("m_g.jpg", 2, 40),
        ("m_d.jpg", 0, 70),
        ("m_m.jpg", 4, 3),
        ("m_h.jpg", 2, 20),
        ("m_f.jpg", 1, 50),
        ("m_k.jpg", 4, 1),
        ("m_i.jpg", 2, 41),
    ]
    # women: w00..w20, race 0 for 0-4, 1 for 5-12, 4 for 13-20; age 100 - k (so, within a
    # race, the order is the reverse of the names)
    women = [(f"w{k:02d}.jpg", 0 if k < 5 else 1 if k < 13 else 4, 100 - k) for k in range(21)]
    rows = [(f, 0, r, a) for f, r, a in men] + [(f, 1, r, a) for f, r, a in women]
    t = pd.DataFrame(rows, columns=["file", "sex", "race", "age"])
    t["age_bucket"] = np.digitize(t["age"], [4, 13, 20, 31, 46, 61])
    return t.sample(frac=1, random_state=0).reset_index(drop=True)


# By hand. Men ordered by race, age, name: m_a m_b m_c m_d (race 0) m_e m_f (1) m_h m_g m_i
# (2) m_j (3) | m_k m_l m_m (4): the first run of 10 carries across four races; its 9th is m_i
# (val), its 10th m_j (test); the last 3 (a short run) go to train.
# Women: w04..w00 (race 0), w12..w05 (1), w20..w13 (4): positions 8, 9 = w09, w08; 18, 19 =
# w15, w14; position 20 (w13) is a short last run: train.
PAPER_VAL = {"m_i.jpg", "w09.jpg", "w15.jpg"}
PAPER_TEST = {"m_j.jpg", "w08.jpg", "w14.jpg"}


def test_uniform_split_is_the_authors_runs_of_ten_within_sex():
    from maskprivacy.datasets.split import uniform_split

    t = paper_table()
    part = uniform_split(t, (0.8, 0.1, 0.1), seed=2021)
    got = dict(zip(t["file"], part, strict=True))
    want = {f: "val" if f in PAPER_VAL else "test" if f in PAPER_TEST else "train" for f in got}
    assert got == want
    # no randomness: the seed and the row order change nothing
    assert uniform_split(t, (0.8, 0.1, 0.1), seed=7).equals(part)
    shuffled = t.sample(frac=1, random_state=5)
    assert uniform_split(shuffled, (0.8, 0.1, 0.1), 0).reindex(t.index).equals(part)


def test_uniform_split_moves_duplicate_groups_and_counts_them():
    t = paper_table()
    t["group"] = t["file"]
    # m_i (val) is a copy of m_a (train, first by name); w14 (test) and w15 (val) one photo
    t.loc[t["file"].isin(["m_a.jpg", "m_i.jpg"]), "group"] = "g1"
    t.loc[t["file"].isin(["w14.jpg", "w15.jpg"]), "group"] = "g2"
    groups = t[["file", "group"]]
    out, _, summary = run(
        {"method": "uniform", "fractions": [0.8, 0.1, 0.1], "seed": 0},
        t.drop(columns="group"),
        [set(t["file"])],
        groups,
    )
    got = dict(zip(out["file"], out["split"], strict=True))
    assert got["m_i.jpg"] == got["m_a.jpg"] == "train"
    assert got["w14.jpg"] == got["w15.jpg"] == "test"  # w14 comes first by name
    assert summary["files_moved_to_keep_groups"] == 2
    assert summary["counts"] == {"train": 29, "val": 1, "test": 4}

    from maskprivacy.report.data import data_report

    rep = data_report({"n_inputs": len(t)}, out, [], groups, split_summary=summary)
    assert rep["duplicates"]["files_moved_by_split_to_keep_groups"] == 2
    assert rep["split_method"] == "uniform"


def test_uniform_split_spreads_test_over_ages():
    from maskprivacy.datasets.split import uniform_split

    t = table(2000, seed=5)
    part = uniform_split(t, (0.8, 0.1, 0.1), seed=0)
    test_ages = t.loc[part == "test", "age"]
    # the test set covers the age range like the whole set (quantiles within 2 years)
    for q in (0.1, 0.5, 0.9):
        assert abs(test_ages.quantile(q) - t["age"].quantile(q)) <= 2


def test_random_is_seeded_and_order_free():
    from maskprivacy.datasets.split import random_split

    t = table(300)
    a = random_split(t, (0.8, 0.1, 0.1), 7)
    b = random_split(t.sample(frac=1, random_state=1), (0.8, 0.1, 0.1), 7).reindex(t.index)
    assert a.equals(b)
    assert not a.equals(random_split(t, (0.8, 0.1, 0.1), 8))
    assert a.value_counts().to_dict() == {"train": 240, "val": 30, "test": 30}


def test_every_method_keeps_duplicate_groups_together():
    from maskprivacy.datasets.split import split_by

    t = table(400)
    t["group"] = t["file"]
    t.loc[t.index[:60], "group"] = [f"g{i // 3}" for i in range(60)]  # 20 groups of 3 copies
    for method in ("stratified", "uniform", "random"):
        part, _ = split_by(method, t, (0.8, 0.1, 0.1), 3)
        assert (t.assign(part=part).groupby("group")["part"].nunique() == 1).all(), method


def test_split_stage_accounts_for_every_file(tmp_path):
    """The split stage, entered as the workflow enters it: faces every shard aligned and masked
    are split, a face masked in no shard is rejected, and the data report balances."""
    import json
    import logging

    from test_download import download_run

    from maskprivacy.core.io import read_table, write_table
    from maskprivacy.stages import split as split_stage
    from maskprivacy.stages.entry import Files, StageConfig

    d = tmp_path / "download"
    cfg = {"source": "demo", "demo": {"n_images": 30, "seed": 1}, "near_duplicates": "keep_all"}
    summary = download_run(
        cfg, d / "images", d / "manifest.csv", d / "rejects.csv", groups=d / "groups.csv"
    )
    (d / "report.json").write_text(json.dumps(summary))
    files = sorted(read_table(d / "manifest.csv")["file"])
    write_table(tmp_path / "landmarks.csv", pd.DataFrame({"file": files}))
    write_table(tmp_path / "masks.csv", pd.DataFrame({"file": files[1:]}))
    write_table(
        tmp_path / "mask_rejects.csv", pd.DataFrame(columns=["file", "stage", "reason", "detail"])
    )
    out = tmp_path / "split"
    inputs = Files(
        manifest=d / "manifest.csv",
        groups=d / "groups.csv",
        images=d / "images",
        download_report=d / "report.json",
        landmarks=[tmp_path / "landmarks.csv"],
        masks=[tmp_path / "masks.csv"],
        rejects=[d / "rejects.csv", tmp_path / "mask_rejects.csv"],
    )
    outputs = Files(
        split=out / "split.csv",
        rejects=out / "rejects.csv",
        report=out / "report.json",
        data_report=out / "data_report.json",
        data_labels=out / "labels.png",
        data_rejects=out / "rejects.png",
    )
    config = StageConfig(params={"method": "stratified", "fractions": [0.8, 0.1, 0.1], "seed": 0})
    got = split_stage.run(config, inputs, outputs, logging.getLogger("test"))
    table, rejects = read_table(out / "split.csv"), read_table(out / "rejects.csv")
    assert sorted(table["file"]) == files[1:] and rejects["file"].tolist() == [files[0]]
    assert got["n_images"] == len(files) - 1
    assert got["data_report"]["accounting"]["balanced"]
    assert (
        json.loads((out / "data_report.json").read_text())["identity"]["group_by"] == "duplicates"
    )
    assert (out / "labels.png").stat().st_size > 0
    assert (out / "rejects.png").stat().st_size > 0


def test_a_face_an_earlier_stage_rejected_is_accounted_once():
    """A face two mask sets could not draw is a reject of each (two rows, the same file), not
    also the split's; the accounting counts it once, as it counts a download entry once."""
    from maskprivacy.analysis.compare import accounting
    from maskprivacy.core.io import n_rejected, rejects_frame

    t = table(100)
    aligned = set(t["file"])
    bad = "00007.jpg"  # aligned, then rejected by both mask sets
    lost = "00009.jpg"  # aligned, missing from mask set b without a reject row: the split's
    present = [aligned, aligned - {bad}, aligned - {bad, lost}]
    mask_rejects = rejects_frame(
        [
            {"file": bad, "stage": "mask", "reason": "mask_error", "detail": f"set {s}"}
            for s in ("a", "b")
        ]
    )
    download_rejects = rejects_frame(
        [  # two entries of one name: two inputs
            {"file": "x.jpg", "stage": "download", "reason": "duplicate_name", "detail": d}
            for d in ("one", "two")
        ]
    )
    out, split_rejects, _ = run(
        {"fractions": [0.8, 0.1, 0.1], "seed": 0}, t, present, rejected={bad}
    )
    assert list(split_rejects["file"]) == [lost]
    rejects = pd.concat([download_rejects, mask_rejects, split_rejects], ignore_index=True)
    assert n_rejected(rejects) == 2 + 1 + 1
    acc = accounting(len(t) + 2, out, rejects)
    assert acc["balanced"] and acc["rejected"] == 4 and acc["in_split"] == 98
    with pytest.raises(RuntimeError, match="not all accounted"):
        accounting(len(t) + 3, out, rejects)


def test_rejects_sheet_shows_each_rejected_input_with_its_reason(tmp_path):
    """The split's picture of the inputs align and mask rejected: each as it came in, in stage,
    reason, file order; other stages' rejects are not shown; a file that cannot be decoded is a
    grey cell, not a crash; with nothing rejected, a sheet that says so."""
    from PIL import Image

    from maskprivacy.core.io import rejects_frame
    from maskprivacy.report.sheets import CELL, rejects_sheet

    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (200, 200), (255, 0, 0)).save(images / "b.jpg", quality=95)
    Image.new("RGB", (200, 200), (0, 0, 255)).save(images / "a.jpg", quality=95)
    (images / "broken.jpg").write_bytes(b"not a jpeg")
    rejects = rejects_frame(
        [
            {"file": "b.jpg", "stage": "align", "reason": "no_face", "detail": ""},
            {"file": "broken.jpg", "stage": "align", "reason": "decode_error", "detail": "x"},
            {"file": "a.jpg", "stage": "align", "reason": "no_face", "detail": ""},
            {"file": "c.jpg", "stage": "download", "reason": "bad_label", "detail": ""},
        ]
    )
    out = rejects_sheet(rejects, images, tmp_path / "rejects.png", cols=4)
    with Image.open(out) as im:
        sheet = im.convert("RGB")
    top = 52  # title lines; the cells follow: decode_error first, then no_face a.jpg, b.jpg
    cell = lambda k: sheet.getpixel((4 + k * CELL + CELL // 2, top + CELL // 2))  # noqa: E731
    assert cell(0) == (211, 211, 211)  # broken.jpg: light grey
    assert cell(1)[2] > 200 > cell(1)[0]  # a.jpg: blue
    assert cell(2)[0] > 200 > cell(2)[2]  # b.jpg: red
    assert cell(3) == (255, 255, 255)  # the download stage's reject is not shown
    empty = rejects_sheet(rejects.iloc[:0], images, tmp_path / "none.png")
    assert Image.open(empty).size[1] < sheet.size[1]
