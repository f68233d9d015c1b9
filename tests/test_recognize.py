"""The recognizer attacker: descriptors of every face version (describe), heads per training set
and seed on them (recognize), in the CNN's prediction format.

Heads on small synthetic descriptors (labels written into them, more weakly for the masked
version); the describe stage on real dlib descriptors of a few demo faces, aligned and masked.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from maskprivacy.analysis import recognizer
from maskprivacy.core.io import read_table
from maskprivacy.faces.descriptors import DESCRIPTOR_COLUMNS, read_descriptors
from maskprivacy.stages import recognize as recognize_stage
from maskprivacy.stages.entry import Compute, Files, StageConfig

CONDITIONS = [
    {"name": "unmasked", "train": "unmasked", "test": "unmasked"},
    {"name": "masked", "train": "masked", "test": "masked"},
    {"name": "unmasked_to_masked", "train": "unmasked", "test": "masked"},
    {"name": "masked_to_unmasked", "train": "masked", "test": "unmasked"},
]
CFG = {"cv": 3, "strengths": [0.1, 1.0, 10.0]}
# the CNN's evaluate writes these columns (maskprivacy.model.predict.predict_condition)
EVALUATE_COLUMNS = [
    "file",
    "condition",
    "sex_pred",
    "race_pred",
    "age_pred",
    "sex_prob_female",
    *[f"race_prob_{k}" for k in range(5)],
]


def synthetic(n: int = 400, seed: int = 0):
    """A split (train / test) and descriptors of two versions: sex, race and age written into
    the unmasked ones; the masked ones keep half the signal under more noise."""
    rng = np.random.default_rng(seed)
    files = [f"{i:04d}.jpg" for i in range(n)]
    sex, race = rng.integers(0, 2, n), rng.integers(0, 5, n)
    age = rng.integers(1, 90, n).astype(float)
    signal = np.zeros((n, 128))
    signal[np.arange(n), sex] = 3.0
    signal[np.arange(n), 2 + race] = 3.0
    signal[:, 10] = (age - 45) / 15
    unmasked = signal + rng.normal(0, 0.5, (n, 128))
    masked = 0.5 * signal + rng.normal(0, 1.0, (n, 128))
    part = np.where(np.arange(n) % 5 == 0, "test", "train")
    split = pd.DataFrame({"file": files, "sex": sex, "race": race, "age": age, "split": part})
    split["age_bucket"] = np.digitize(age, [3, 10, 20, 28, 46, 61])
    versions = {
        name: pd.DataFrame(x.astype(np.float32), index=pd.Index(files, name="file"))
        for name, x in (("unmasked", unmasked), ("masked", masked))
    }
    return split, versions


def test_heads_predict_every_condition_and_seed_in_evaluates_format():
    split, versions = synthetic()
    preds, rejects, summary = recognizer.recognize(split, versions, CONDITIONS, [0, 1], CFG)
    test = split[split["split"] == "test"]
    assert set(preds) == {(c["name"], s) for c in CONDITIONS for s in (0, 1)}
    for (cond, _), df in preds.items():
        assert list(df.columns) == EVALUATE_COLUMNS
        assert df["file"].tolist() == test["file"].tolist() and (df["condition"] == cond).all()
        probs = df[[f"race_prob_{k}" for k in range(5)]].to_numpy()
        assert np.allclose(probs.sum(1), 1) and (probs.argmax(1) == df["race_pred"]).all()
        assert ((df["sex_prob_female"] > 0.5) == (df["sex_pred"] == 1)).all()
    assert rejects == [] and summary["n_no_descriptor"] == 0
    assert set(summary["heads"]) == {
        f"{d} seed {s}" for d in ("masked", "unmasked") for s in (0, 1)
    }

    def acc(cond, attr):
        return (preds[(cond, 0)][f"{attr}_pred"].to_numpy() == test[attr].to_numpy()).mean()

    # the heads read what the descriptors carry, the masked version less well
    assert acc("unmasked", "sex") > 0.95 and acc("unmasked", "race") > 0.9
    assert acc("masked", "race") < acc("unmasked", "race")
    mae = np.abs(preds[("unmasked", 0)]["age_pred"] - test["age"].to_numpy()).mean()
    assert mae < 0.5 * np.abs(test["age"] - np.median(split["age"])).mean()


def test_fits_in_parallel_give_the_heads_of_fits_one_after_another():
    """recognize's threads fit several (training set, seed) heads at once: the same strengths
    and predictions as one fit after another, only sooner."""
    split, versions = synthetic()
    keep1, keep2 = {}, {}
    one = recognizer.recognize(split, versions, CONDITIONS, [0, 1], CFG, threads=1, keep=keep1)
    two = recognizer.recognize(split, versions, CONDITIONS, [0, 1], CFG, threads=2, keep=keep2)
    assert one[2] == two[2]  # the strengths chosen, the counts
    assert set(keep1) == set(keep2) == {(d, s) for d in ("masked", "unmasked") for s in (0, 1)}
    for key, df in one[0].items():
        pd.testing.assert_frame_equal(df, two[0][key])


def test_a_face_without_a_descriptor_is_left_out_or_guessed_and_listed():
    """A training face without a descriptor is left out of training; a test face without one
    is predicted from the training prior (so every condition stays on the same test faces)."""
    split, versions = synthetic()
    test = split[split["split"] == "test"]
    lost_test, lost_train = test["file"].iat[0], split.loc[split["split"] == "train", "file"].iat[0]
    versions["masked"] = versions["masked"].drop([lost_test, lost_train])
    preds, rejects, _ = recognizer.recognize(split, versions, CONDITIONS, [0], CFG)
    assert {(r["file"], r["reason"]) for r in rejects} == {
        (lost_test, "no_descriptor"),
        (lost_train, "no_descriptor"),
    }
    row = preds[("masked", 0)].set_index("file").loc[lost_test]
    train = split[(split["split"] == "train") & (split["file"] != lost_train)]  # the heads' own
    assert row["age_pred"] == np.median(train["age"])
    assert row["race_pred"] == np.bincount(train["race"]).argmax()
    assert len(preds[("unmasked_to_masked", 0)]) == len(test)


def test_a_class_rarer_than_the_folds_still_gets_heads_one_class_is_an_error():
    """Small data sets (the tests' pipeline runs): a race with 2 training faces and 3 folds."""
    split, versions = synthetic()
    split.loc[split["race"] == 4, "race"] = 3
    split.loc[split.index[split["split"] == "train"][:2], "race"] = 4
    preds, _, _ = recognizer.recognize(split, versions, CONDITIONS[:1], [0], CFG)
    assert list(preds[("unmasked", 0)].columns) == EVALUATE_COLUMNS
    split["sex"] = 0
    with pytest.raises(ValueError, match="one sex class only"):
        recognizer.recognize(split, versions, CONDITIONS[:1], [0], CFG)


def test_the_mlp_head_is_used_when_asked_and_seeded_by_the_seed():
    """recognize.head: mlp fits scikit-learn MLPs (one hidden layer, early stopping) in place of
    the linear heads; the seed draws them, so one seed gives the same predictions twice."""
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    split, versions = synthetic(n=200)
    cfg = {"cv": 2, "strengths": [0.1, 1.0], "head": "mlp"}
    keep: dict = {}
    preds, _, summary = recognizer.recognize(split, versions, CONDITIONS[:1], [0], cfg, keep=keep)
    heads = keep[("unmasked", 0)]
    for head in (heads.sex, heads.race):
        mlp = head[-1].best_estimator_
        assert isinstance(mlp, MLPClassifier) and mlp.early_stopping
        assert mlp.hidden_layer_sizes == (recognizer.HIDDEN,) and mlp.random_state == 0
    assert isinstance(heads.age[-1].best_estimator_.regressor_, MLPRegressor)
    assert summary["heads"]["unmasked seed 0"]["strength_chosen"]["race"] in (0.1, 1.0)
    df = preds[("unmasked", 0)]
    assert list(df.columns) == EVALUATE_COLUMNS
    test = split[split["split"] == "test"]
    assert (df["sex_pred"].to_numpy() == test["sex"].to_numpy()).mean() > 0.8
    again, _, _ = recognizer.recognize(split, versions, CONDITIONS[:1], [0], cfg)
    pd.testing.assert_frame_equal(again[("unmasked", 0)], df)
    linear, _, _ = recognizer.recognize(split, versions, CONDITIONS[:1], [0], CFG)
    assert not np.allclose(linear[("unmasked", 0)]["age_pred"], df["age_pred"])
    with pytest.raises(ValueError, match="head 'svm' is not one of"):
        recognizer.fit_heads(np.zeros((4, 128)), split.iloc[:4], {"head": "svm"}, 0)


def write_version(path, frame):
    table = frame.reset_index().rename(columns=dict(enumerate(DESCRIPTOR_COLUMNS)))
    table.insert(1, "sha256", "0" * 64)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)


def recognize_inputs(root):
    """The synthetic split and versions written as the recognize job reads them: the split,
    the download report, the identity (unmasked) and describe (masked) tables under ``root``."""
    split, versions = synthetic()
    split.to_csv(root / "split.csv", index=False)
    (root / "download.json").write_text(json.dumps({"source": "path"}))
    tables = [
        root / "data/identity/0/descriptors.csv",
        root / "data/describe/masked/0/descriptors.csv",
    ]
    write_version(tables[0], versions["unmasked"])
    write_version(tables[1], versions["masked"])
    inputs = Files(
        split=root / "split.csv", descriptors=tables, download_report=root / "download.json"
    )
    return split, versions, inputs


def test_recognize_stage_writes_what_evaluate_writes(tmp_path):
    """Per condition and seed: predictions and a metrics.json shaped as evaluate's, so that
    compare reads both attackers alike; the versions come from the identity and describe
    tables' paths."""
    split, versions, inputs = recognize_inputs(tmp_path)
    out = tmp_path / "results/recognize"
    names = [(c["name"], s) for c in CONDITIONS for s in (0, 1)]
    pred_files = [out / f"{c}/seed{s}/predictions.csv" for c, s in names]
    metric_files = [out / f"{c}/seed{s}/metrics.json" for c, s in names]
    summary = recognize_stage.run(
        StageConfig(
            params=CFG,
            extra={
                "seeds": [0, 1],
                "evaluate": {"conditions": CONDITIONS, "bootstrap": 100, "seed": 0},
            },
            compute=Compute(threads=1),
        ),
        inputs,
        Files(predictions=pred_files, metrics=metric_files, rejects=out / "rejects.csv"),
        logging.getLogger("test"),
    )
    assert summary["versions"] == {"unmasked": 400, "masked": 400}
    for (cond, seed), p, m in zip(names, pred_files, metric_files, strict=True):
        assert list(read_table(p).columns) == EVALUATE_COLUMNS
        metrics = json.loads(m.read_text())
        assert metrics["condition"]["name"] == cond and metrics["seed"] == seed
        assert {"sex", "race", "age", "n_test"} <= set(metrics)
        assert {"accuracy", "accuracy_low", "accuracy_high"} <= set(metrics["sex"])
    assert read_table(out / "rejects.csv").empty
    # compare reads them as the CNN's: same statistics, its own Holm family, a report section
    from maskprivacy.analysis import compare
    from maskprivacy.report import html
    from maskprivacy.stages.compare import recognizer_statistics

    cfg = {"baseline": "unmasked", "alpha": 0.05, "bootstrap": 100, "permutations": 99, "seed": 0}
    rec = recognizer_statistics(
        Files(
            recognizer_predictions=pred_files,
            recognizer_metrics=metric_files,
            recognizer_rejects=out / "rejects.csv",
        ),
        split[split["split"] == "test"].reset_index(drop=True),
        split,
        [c["name"] for c in CONDITIONS],
        [0, 1],
        cfg,
        CONDITIONS,
        {},
    )
    assert set(rec["comparisons"]) == {f"{c['name']}_vs_unmasked" for c in CONDITIONS[1:]}
    assert rec["answer"]["comparison"] == "masked_vs_unmasked"
    assert rec["multiple_testing"]["m"] >= 9 and rec["no_descriptor"]["n"] == 0
    flat = compare.metrics_summary({"data_source": "path", **rec})
    assert (
        flat["masked"]["sex"]["accuracy"] == rec["conditions"]["masked"]["mean"]["sex"]["accuracy"]
    )
    assert "race_p_holm" in flat["masked_vs_unmasked"]
    page = html.recognizer_section(rec)
    assert "Second attacker" in page and "tests of the recognizer" in page
    with pytest.raises(ValueError, match="neither an identity nor a describe table"):
        recognize_stage.version_of("data/align/0/landmarks.csv")


def test_recognize_keeps_its_heads_and_recognize_external_scores_with_them(tmp_path):
    """With external sets, recognize writes its fitted heads; recognize_external applies those
    very heads (no refit) to an external set's versions, on the faces that passed align and
    every mask set, in evaluate_external's format; a face without a descriptor is predicted from
    the training prior and listed."""
    from maskprivacy.stages import recognize_external

    split, versions, inputs = recognize_inputs(tmp_path)
    conds = CONDITIONS[:2]
    heads = [tmp_path / f"results/recognize/heads/{d}/seed0.joblib" for d in ("masked", "unmasked")]
    out = tmp_path / "results/recognize"
    recognize_stage.run(
        StageConfig(
            params=CFG,
            extra={"seeds": [0], "evaluate": {"conditions": conds, "bootstrap": 100, "seed": 0}},
        ),
        inputs,
        Files(
            predictions=[out / f"{c['name']}/seed0/predictions.csv" for c in conds],
            metrics=[out / f"{c['name']}/seed0/metrics.json" for c in conds],
            rejects=out / "rejects.csv",
            heads=heads,
        ),
        logging.getLogger("test"),
    )
    kept = recognizer.load_heads(heads[1])
    assert kept.chosen and isinstance(kept, recognizer.Heads)

    # the external set "ff": 30 faces of the synthetic set (their descriptors, other names);
    # align lost one, mask another; the masked version has no descriptor of a third
    ext = tmp_path / "data/external/ff"
    files = [f"ff_{i}.jpg" for i in range(30)]
    source = split.iloc[:30]
    age = source["age"].to_numpy()
    labels = pd.DataFrame(
        {
            "file": files,
            "sex": source["sex"].to_numpy(),
            "race": source["race"].to_numpy(),
            "age": np.nan,  # an age range only, as FairFace gives
            "age_low": age - 5,
            "age_high": age + 5,
        }
    )
    ext.mkdir(parents=True)
    labels.to_csv(ext / "manifest.csv", index=False)
    pd.DataFrame({"file": files[1:]}).to_csv(ext / "landmarks.csv", index=False)
    (ext / "mask/masked/0").mkdir(parents=True)
    pd.DataFrame({"file": files[:29]}).to_csv(ext / "mask/masked/0/masks.csv", index=False)
    described = {}
    for version in ("unmasked", "masked"):
        frame = versions[version].iloc[:30].set_axis(pd.Index(files, name="file"))
        if version == "masked":
            frame = frame.drop(files[5])
        described[version] = frame
        write_version(ext / f"describe/{version}/0/descriptors.csv", frame)
    res = tmp_path / "results/recognize_external/ff"
    jobs = [(v, d) for v in ("unmasked", "masked") for d in ("masked", "unmasked")]
    summary = recognize_external.run(
        StageConfig(params={"bootstrap": 100, "seed": 0}, wildcards={"ext": "ff"}),
        Files(
            manifest=ext / "manifest.csv",
            landmarks=[ext / "landmarks.csv"],
            masks=[ext / "mask/masked/0/masks.csv"],
            descriptors=[ext / f"describe/{v}/0/descriptors.csv" for v in ("unmasked", "masked")],
            heads=heads,
            download_report=tmp_path / "download.json",
        ),
        Files(
            predictions=[res / f"{v}/{d}/seed0/predictions.csv" for v, d in jobs],
            metrics=[res / f"{v}/{d}/seed0/metrics.json" for v, d in jobs],
            rejects=res / "rejects.csv",
        ),
        logging.getLogger("test"),
    )
    scored = files[1:29]
    assert summary["n_faces"] == len(scored) and summary["n_no_descriptor"] == 1
    for version, train in jobs:
        preds = read_table(res / f"{version}/{train}/seed0/predictions.csv")
        assert list(preds.columns) == EVALUATE_COLUMNS and preds["file"].tolist() == scored
        # the very heads recognize fitted: the same predictions from the kept file
        want, missing = recognizer.predict(
            recognizer.load_heads(res.parents[1] / f"recognize/heads/{train}/seed0.joblib"),
            scored,
            described[version],
            preds["condition"].iat[0],
        )
        pd.testing.assert_frame_equal(preds, want, check_dtype=False)
        assert missing == ([files[5]] if version == "masked" else [])
        m = json.loads((res / f"{version}/{train}/seed0/metrics.json").read_text())
        assert (m["set"], m["version"], m["train"], m["seed"]) == ("ff", version, train, 0)
        assert {"sex", "race", "age_range"} <= set(m) and m["n_faces"] == len(scored)
    rejects = read_table(res / "rejects.csv")
    assert rejects[["file", "stage", "reason"]].values.tolist() == [
        [files[5], "recognize_external", "no_descriptor"]
    ]


# --------------------------------------------------------------------------------------------
# describe: real dlib descriptors of masked demo faces
# --------------------------------------------------------------------------------------------


def run_describe(images, landmarks, descriptors, rejects) -> dict:
    from maskprivacy.stages import describe

    return describe.run(
        StageConfig(params={}, wildcards={"maskset": "masked", "shard": "0"}),
        Files(images=images, landmarks=landmarks),
        Files(descriptors=descriptors, rejects=rejects),
        logging.getLogger("test"),
    )


@pytest.fixture(scope="module")
def masked_demo(tmp_path_factory):
    """12 demo faces aligned, masked (paper), and described unmasked (identity) and masked."""
    from test_align import run_align
    from test_identity import run_identity
    from test_masks import _run_mask

    from maskprivacy.datasets import demo

    tmp = tmp_path_factory.mktemp("describe")
    paths = demo.generate(tmp / "in", n_images=12, seed=3, progress=False)
    pd.DataFrame({"file": sorted(p.name for p in paths)}).to_csv(tmp / "manifest.csv", index=False)
    cfg = {"size": 160, "upsample": [0, 1], "eye_y": 0.4, "eye_distance": 0.3}
    cfg |= {"predictor": "", "jpeg_quality": 95}
    run_align(
        cfg, tmp / "in", tmp / "manifest.csv", tmp / "al/images", tmp / "lm.csv", tmp / "ar.csv"
    )
    mask_cfg = {"types": {"paper": 1.0}, "textures": ["solid"], "check_tolerance": 0.05}
    _run_mask(mask_cfg | {"seed": 0, "jpeg_quality": 95}, tmp / "al", tmp / "lm.csv", tmp / "mk")
    run_identity(tmp / "al/images", tmp / "lm.csv", tmp / "u.csv", tmp / "ur.csv")
    summary = run_describe(tmp / "mk/images", tmp / "lm.csv", tmp / "m.csv", tmp / "mr.csv")
    return tmp, summary


def test_masked_descriptors_differ_from_unmasked(masked_demo):
    """Every face has a descriptor in both versions; the mask moves it (the recognizer sees
    another face): typically further than the variants of one portrait lie apart, less than
    the distance between the two people."""
    tmp, summary = masked_demo
    assert summary["n_described"] == summary["n_inputs"] >= 8 and summary["n_rejects"] == 0
    fu, xu = read_descriptors([tmp / "u.csv"])
    fm, xm = read_descriptors([tmp / "m.csv"])
    assert fu == fm
    moved = np.linalg.norm(xu - xm, axis=1)
    assert (moved > 0.05).all()
    # the demo's two people (Grace Hopper, Eileen Collins): dlib's same-person threshold, 0.6,
    # splits the unmasked descriptors into exactly two groups
    apart = np.linalg.norm(xu[:, None] - xu[None], axis=2)
    first = apart[0] < 0.6
    assert 0 < first.sum() < len(first)
    for row in apart:
        assert ((row < 0.6) == first).all() or ((row < 0.6) == ~first).all()
    same = np.equal.outer(first, first)
    within = apart[same & ~np.eye(len(first), dtype=bool)]
    assert np.median(within) < np.median(moved) < np.median(apart[~same])
    assert read_table(tmp / "mr.csv").empty


def test_describe_resumes_after_a_kill(masked_demo, tmp_path, monkeypatch):
    """A job killed part way keeps what it described in its checkpoint; the rerun describes
    only the rest and writes the same table as an uninterrupted run."""
    from maskprivacy.faces import identity

    tmp, _ = masked_demo
    real, calls = identity.describe_file, []

    def dies_after_four(*args, **kw):
        if len(calls) == 4:
            raise KeyboardInterrupt  # the kill: not a face's failure, the job's end
        calls.append(args[0])
        return real(*args, **kw)

    out = tmp_path / "m.csv"
    monkeypatch.setattr(identity, "describe_file", dies_after_four)
    with pytest.raises(KeyboardInterrupt):
        run_describe(tmp / "mk/images", tmp / "lm.csv", out, tmp_path / "r.csv")
    assert not out.exists() and (tmp_path / ".m.csv.partial").is_file()
    monkeypatch.setattr(identity, "describe_file", real)
    s = run_describe(tmp / "mk/images", tmp / "lm.csv", out, tmp_path / "r.csv")
    assert s["n_resumed_from_checkpoint"] == 4
    assert not (tmp_path / ".m.csv.partial").exists()
    pd.testing.assert_frame_equal(read_table(out), read_table(tmp / "m.csv"))


# --------------------------------------------------------------------------------------------
# The workflow (the end-to-end run is tests/test_pipeline.py's)
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_switching_the_recognizer_off_removes_its_stages(tmp_path, demo_folder):
    """recognize.enabled: false plans no describe, recognize or identity job, and dvc.yaml
    has no such stage; on (the default) plans them all."""
    import yaml
    from test_pipeline import BIN, make_copy, sh, tiny_params

    p = tiny_params(demo_folder, seeds=[0])
    on = make_copy(tmp_path / "on", p)
    plan = sh(on, str(BIN / "snakemake"), "-n", "--quiet", "rules").stdout
    assert all(f"\n{r} " in plan for r in ("describe", "recognize", "identity"))
    p["recognize"]["enabled"] = False
    off = make_copy(tmp_path / "off", p)
    plan = sh(off, str(BIN / "snakemake"), "-n", "--quiet", "rules").stdout
    assert not any(f"\n{r} " in plan for r in ("describe", "recognize", "identity"))
    assert "compare" in plan
    stages = yaml.safe_load((off / "dvc.yaml").read_text())["stages"]
    assert not {"describe", "recognize", "identity"} & set(stages)
