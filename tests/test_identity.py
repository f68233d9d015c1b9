"""Identity groups: dlib descriptors (the identity stage) and the identity-disjoint split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from maskprivacy.core.io import read_table
from maskprivacy.datasets import identity_groups
from maskprivacy.datasets.split import run as split_run
from maskprivacy.faces import identity
from maskprivacy.faces.descriptors import read_descriptors
from maskprivacy.stages import identity as identity_stage
from maskprivacy.stages.entry import Files, StageConfig


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, identity.DIM))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def chain(start: np.ndarray, direction: np.ndarray, steps: int, step: float) -> np.ndarray:
    """Points ``step`` apart along ``direction``: neighbours are close, the ends far apart."""
    return start + np.outer(np.arange(steps) * step, direction)


def synthetic() -> tuple[list[str], np.ndarray, dict[str, str]]:
    """Two chains (each link 0.57 long, the ends up to 1.71 apart), a tight pair and three loners, all
    at least 3 apart from each other; returns names, descriptors and each name's true group."""
    rng = np.random.default_rng(0)
    centres = 10 * unit(rng, 6)  # pairwise about 14 apart
    dirs = unit(rng, 2)
    points = [
        chain(centres[0], dirs[0], 4, 0.57),  # a0 - a1 - a2 - a3
        chain(centres[1], dirs[1], 3, 0.57),  # b0 - b1 - b2
        centres[2] + np.array([[0.0] * 128, [0.3] + [0.0] * 127]),  # c0, c1
        centres[3:6],  # loners
    ]
    names = [f"a{i}" for i in range(4)] + [f"b{i}" for i in range(3)] + ["c0", "c1"]
    names += ["x0", "y0", "z0"]
    truth = {n: n[0] for n in names}
    return names, np.concatenate(points).astype(np.float32), truth


def test_close_pairs_is_exact_against_brute_force():
    rng = np.random.default_rng(1)
    x = rng.normal(scale=0.08, size=(37, 128)).astype(np.float32)
    d = np.linalg.norm(x[:, None].astype(np.float64) - x[None], axis=2)
    radius = float(np.quantile(d[np.triu_indices(37, 1)], 0.3))
    gi, gj, gd = identity_groups.close_pairs(x, radius, block=5)  # several blocks
    ii, jj = np.nonzero(np.triu(d < radius, 1))
    assert np.stack([gi, gj], 1).tolist() == np.stack([ii, jj], 1).tolist()
    assert np.allclose(gd, d[ii, jj], atol=1e-5)


def test_groups_are_connected_components_of_close_pairs():
    names, x, truth = synthetic()
    # a0 and a3 are 1.71 apart: only the chain joins them
    assert np.linalg.norm(x[0] - x[3]) > 1.4
    groups, pairs, sweep = identity_groups.identity_groups(names, x, threshold=0.6)
    by_group = groups.groupby("identity")["file"].apply(sorted).tolist()
    expected = pd.Series(truth).groupby(pd.Series(truth)).apply(lambda s: sorted(s.index))
    assert sorted(by_group) == sorted(expected.tolist())
    # ids are the smallest name of each group, whatever the input order
    assert groups.set_index("file").loc["a3", "identity"] == "a0"
    order = np.random.default_rng(2).permutation(len(names))
    again, _, _ = identity_groups.identity_groups([names[i] for i in order], x[order], 0.6)
    assert (
        again.set_index("file")["identity"]
        .sort_index()
        .equals(groups.set_index("file")["identity"].sort_index())
    )
    # the chain's links (0.57) sit near the threshold: they go to the contact sheet
    assert {("a0", "a1"), ("b1", "b2")} <= set(zip(pairs["file_a"], pairs["file_b"], strict=True))
    assert pairs["linked"].all() and (pairs["distance"] < 0.6).all()
    # at 0.45 the links break: every chain falls apart, the tight pair (0.3) stays
    loose, _, _ = identity_groups.identity_groups(names, x, threshold=0.45)
    assert loose["identity"].nunique() == len(names) - 1
    # the report's sweep says the same of the thresholds below 0.6
    assert sweep["by_threshold"]["0.45"]["identities"] == len(names) - 1
    assert sweep["by_threshold"]["0.6"]["identities"] == 6
    assert sweep["by_threshold"]["0.6"]["largest"] == 4
    assert sweep["pairs_linked_in_window"] == 5 and sweep["pairs_apart_in_window"] == 0


def test_duplicate_groups_merge_into_identity_groups():
    names, x, _ = synthetic()
    dup = pd.DataFrame({"file": ["a3", "x0", "gone"], "group": ["g", "g", "g"]})
    groups, _, _ = identity_groups.identity_groups(names, x, 0.6, duplicates=dup)
    g = groups.set_index("file")
    assert g.loc["x0", "group"] == g.loc["a1", "group"] == "a0"  # x0 joins chain a by a copy
    assert g.loc["x0", "identity"] == "x0"  # its own identity nonetheless
    assert g.loc["a0", "group_size"] == 5


def labelled(names: list[str], person: np.ndarray | None = None, seed: int = 0) -> pd.DataFrame:
    """Labels for ``names``; with ``person``, one sex and race per person and ages near theirs."""
    rng = np.random.default_rng(seed)
    person = np.arange(len(names)) if person is None else person
    n = person.max() + 1
    sex, race, age = rng.integers(0, 2, n), rng.integers(0, 5, n), rng.integers(1, 80, n)
    age = age[person] + rng.integers(0, 10, len(names))
    return pd.DataFrame(
        {
            "file": names,
            "age": age,
            "sex": sex[person],
            "race": race[person],
            "age_bucket": np.digitize(age, [4, 13, 20, 31, 46, 61]),
        }
    )


@pytest.mark.parametrize("method", ["stratified", "uniform", "random"])
def test_split_keeps_every_identity_on_one_side(method):
    """600 people with 1-9 photos each: grouped by identity, no person is in two parts; the
    duplicates-only split puts many test faces' owners in train too."""
    rng = np.random.default_rng(3)
    people = 10 * unit(rng, 600)
    sizes = rng.integers(1, 10, 600)
    x = np.concatenate(
        [p + rng.normal(scale=0.02, size=(k, 128)) for p, k in zip(people, sizes, strict=True)]
    )
    person = np.repeat(np.arange(600), sizes)
    names = [f"{i:04d}.jpg" for i in range(len(x))]
    groups, _, _ = identity_groups.identity_groups(names, x.astype(np.float32), 0.6)
    assert groups["identity"].nunique() == 600
    table = labelled(names, person)
    cfg = {"method": method, "fractions": [0.8, 0.1, 0.1], "seed": 0}
    out, _, _ = split_run(cfg, table, [set(names)], groups)
    parts = out.assign(person=out["file"].map(dict(zip(names, person, strict=True))))
    assert (parts.groupby("person")["split"].nunique() == 1).all()
    ident = groups.set_index("file")["identity"]
    assert identity_groups.leakage(out, ident)["share"] == 0
    today, _, _ = split_run(cfg, table, [set(names)], None)
    leak = identity_groups.leakage(today, ident)
    assert leak["share"] > 0.3 and leak["test_faces"] == (today["split"] == "test").sum()
    if method == "stratified":  # places groups by the room left: the fractions hold
        counts = out["split"].value_counts()
        assert abs(counts["test"] / len(out) - 0.1) < 0.03


def test_a_giant_group_is_a_clear_error_not_a_degenerate_split():
    """Two people (the demo), or one group holding most faces (chained links): the split cannot
    follow split.fractions, and says so rather than train on nearly everything."""
    names = [f"{i:03d}.jpg" for i in range(200)]
    table = labelled(names)
    cfg = {"fractions": [0.8, 0.1, 0.1], "seed": 0}
    for members in ([100, 100], [180] + [1] * 20):
        ids = np.repeat([names[k] for k in np.cumsum([0, *members[:-1]])], members)
        groups = pd.DataFrame({"file": names, "group": ids})
        out, _, _ = split_run(cfg, table, [set(names)], groups)
        with pytest.raises(ValueError, match=r"cannot divide the faces.*largest of \[\d+"):
            identity_groups.check_parts(out, cfg["fractions"], groups)
    # many small groups divide fine
    groups = pd.DataFrame({"file": names, "group": np.repeat(names[::4], 4)})
    out, _, _ = split_run(cfg, table, [set(names)], groups)
    identity_groups.check_parts(out, cfg["fractions"], groups)


# --------------------------------------------------------------------------------------------
# On real descriptors of demo faces (dlib)
# --------------------------------------------------------------------------------------------


def run_identity(images, landmarks, descriptors, rejects) -> dict:
    """The identity stage as its rule runs it, with the default parameters."""
    import logging

    return identity_stage.run(
        StageConfig(params={}, wildcards={"shard": "0"}),
        Files(images=images, landmarks=landmarks),
        Files(descriptors=descriptors, rejects=rejects),
        logging.getLogger("test"),
    )


@pytest.fixture(scope="module")
def demo_descriptors(tmp_path_factory):
    """24 demo faces (variants of two portraits, with painted cues) through align and identity."""
    from test_align import run_align

    from maskprivacy.datasets import demo

    tmp = tmp_path_factory.mktemp("identity")
    paths = demo.generate(tmp / "in", n_images=24, seed=5, progress=False)
    pd.DataFrame({"file": sorted(p.name for p in paths)}).to_csv(tmp / "manifest.csv", index=False)
    cfg = {"size": 160, "upsample": [0, 1], "eye_y": 0.4, "eye_distance": 0.3}
    cfg |= {"predictor": "", "jpeg_quality": 95}
    run_align(cfg, tmp / "in", tmp / "manifest.csv", tmp / "al", tmp / "lm.csv", tmp / "ar.csv")
    summary = run_identity(tmp / "al", tmp / "lm.csv", tmp / "d.csv", tmp / "r.csv")
    return tmp, summary


def test_demo_variants_form_two_identities(demo_descriptors):
    """Every variant of one portrait is one person, the two portraits are two, at dlib's 0.6,
    though the faces carry painted cues (colour cast, forehead disc, chin bar)."""
    from maskprivacy.datasets import demo

    tmp, summary = demo_descriptors
    assert summary["n_described"] == summary["n_inputs"] >= 18 and summary["n_rejects"] == 0
    files, x = read_descriptors([tmp / "d.csv"])
    groups, _, _ = identity_groups.identity_groups(files, x, identity_groups.DEFAULT_THRESHOLD)
    assert groups["identity"].nunique() == 2
    # each group is one portrait: the one whose own (unpainted) descriptor is nearest
    bases = np.stack([identity.describe(np.asarray(im), pts) for im, pts in demo.base_faces()])
    nearest = np.linalg.norm(x[:, None] - bases[None], axis=2).argmin(axis=1)
    assert set(nearest) == {0, 1}
    assert (groups.groupby(nearest)["identity"].nunique() == 1).all()
    table = read_table(tmp / "d.csv")
    assert list(table.columns[:2]) == ["file", "sha256"] and table.shape[1] == 130


def test_identity_stage_resumes_from_its_checkpoint(demo_descriptors, tmp_path):
    """A killed job's checkpoint is reused for images whose bytes did not change (and only
    under the same parameters); a missing image is a reject, not a crash."""
    tmp, _ = demo_descriptors
    first = read_table(tmp / "d.csv")
    name, sha = first["file"].iat[0], first["sha256"].iat[0]
    out = tmp_path / "d.csv"
    key = identity._config_key({}, identity.model_path())
    fake = ",".join(["0.5"] * identity.DIM)
    for header, resumed in ((f"# {key}", 1), ('# {"other": 1}', 0)):
        (tmp_path / ".d.csv.partial").write_text(f"{header}\n{name},{sha},{fake}\n{name},cut")
        s = run_identity(tmp / "al", tmp / "lm.csv", out, tmp_path / "r.csv")
        got = read_table(out).set_index("file").loc[name, identity.DESCRIPTOR_COLUMNS]
        assert s["n_resumed_from_checkpoint"] == resumed
        assert np.allclose(got.to_numpy(float), 0.5) == bool(resumed)
        assert not (tmp_path / ".d.csv.partial").exists()
    lm = read_table(tmp / "lm.csv")
    lm.iloc[:1].assign(file="missing.jpg").pipe(lambda t: pd.concat([t, lm.iloc[1:3]])).to_csv(
        tmp_path / "lm.csv", index=False
    )
    s = run_identity(tmp / "al", tmp_path / "lm.csv", out, tmp_path / "r.csv")
    rejects = read_table(tmp_path / "r.csv")
    assert s["n_described"] == 2 and rejects["file"].tolist() == ["missing.jpg"]
    assert rejects["reason"].tolist() == ["decode_error"]


@pytest.mark.parametrize("blas", [False, True])
def test_identity_stage_says_when_dlib_has_no_blas(
    blas, demo_descriptors, tmp_path, caplog, monkeypatch
):
    """pip's dlib-bin has no BLAS (about 4.5 times slower descriptors): the stage warns, with the
    way out, and its report says which dlib it ran; with BLAS it says nothing."""
    import dlib

    tmp, _ = demo_descriptors
    read_table(tmp / "lm.csv").iloc[:2].to_csv(tmp_path / "lm.csv", index=False)
    monkeypatch.setattr(dlib, "DLIB_USE_BLAS", blas, raising=False)
    with caplog.at_level("WARNING"):
        s = run_identity(tmp / "al", tmp_path / "lm.csv", tmp_path / "d.csv", tmp_path / "r.csv")
    assert s["dlib_blas"] is blas and s["n_described"] == 2
    warned = [r.getMessage() for r in caplog.records if "without BLAS" in r.getMessage()]
    assert bool(warned) is not blas
    if warned:
        assert "make dlib-blas" in warned[0] and "--use-conda" in warned[0]
