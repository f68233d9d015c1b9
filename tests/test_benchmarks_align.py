"""benchmarks/align_mask_speed.py runs end to end on a few faces the tests make."""

from __future__ import annotations

import importlib.util
import json
import tarfile

import pytest
from conftest import ROOT


def load_bench():
    spec = importlib.util.spec_from_file_location(
        "align_mask_speed", ROOT / "benchmarks/align_mask_speed.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_first_by_sha1_from_an_archive(tmp_path, demo_folder):
    import hashlib

    bench = load_bench()
    faces = sorted(demo_folder.glob("*_2026*.jpg"))[:8]
    with tarfile.open(tmp_path / "x.tar.gz", "w:gz") as t:
        for f in faces:
            t.add(f, arcname=f"UTKFace/{f.name}")
    names = bench.first_by_sha1(tmp_path / "x.tar.gz", 5, tmp_path / "out")
    want = sorted((hashlib.sha1(f.read_bytes()).hexdigest(), f.name) for f in faces)[:5]
    assert names == [n for _, n in want]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(names)


def test_benchmark_prints_rates_ratio_and_scaling(tmp_path, demo_folder, capsys):
    bench = load_bench()
    src = tmp_path / "src"
    src.mkdir()
    for f in sorted(demo_folder.glob("*_2026*.jpg"))[:10]:
        (src / f.name).write_bytes(f.read_bytes())
    out = tmp_path / "bench.json"
    rc = bench.main(
        [
            str(src),
            "--n",
            "8",
            "--params",
            str(ROOT / "params.yaml"),
            "--types",
            "paper,cloth",
            "--repeat",
            "1",
            "--per-type",
            "--json",
            str(out),
            "--workdir",
            str(tmp_path / "work"),
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    for key in ("bare dlib detect", "pipeline align + mask, 1 core", "2 cores", "ratio", "scaling"):
        assert key in text
    res = json.loads(out.read_text())
    assert res["n_images"] == 8
    assert res["pipeline_img_s"] > 0 and res["bare_dlib_detect_landmarks_img_s"] > 0
    assert (
        res["ratio_pipeline_to_bare"]
        == res["pipeline_img_s"] / res["bare_dlib_detect_landmarks_img_s"]
    )
    assert set(res["mask_stage_img_s_by_type"]) == {"paper", "surgical", "n95", "kn95", "cloth"}
    assert 0 < res["masked_fraction"] <= 1
    assert "2 shard jobs" in text and res["pipeline_2shards_img_s"] > 0
    assert len(res["ratio_paired"]) == 1 and res["ratio_paired"][0] > 0
    assert len(res["ratio_paired_cpu"]) == 1 and res["ratio_paired_cpu"][0] > 0
    assert len(res["file_create_ms"]) == 1 and res["file_create_ms"][0] > 0
    assert "file create" in text
    # the identity stage's descriptors, timed in the same run on the faces it aligned
    assert "identity descriptor, 1 core" in text
    assert 0 < res["identity_faces"] <= 8 and res["identity_rejects"] == 0
    assert res["identity_img_s"] == pytest.approx(1000 / res["identity_ms_per_face"])
    assert res["identity_cost_over_align_mask"] > 0
    # the HOG cascade alone and with the CNN fallback, on the same images, against bare dlib
    for det in ("cascade", "cascade+cnn"):
        d = res["by_detector"][det]
        # each repeat pairs its own bare dlib run with this detector's: the median is the figure
        assert d["img_s"] > 0 and len(d["ratio_paired"]) == len(d["ratio_paired_cpu"]) == 1
        assert d["ratio_to_bare"] == pytest.approx(d["ratio_paired"][0])
        assert d["ratio_to_bare_cpu"] == pytest.approx(d["ratio_paired_cpu"][0])
        assert d["ratio_to_bare_cpu"] > 0
        assert 0 < d["aligned_fraction"] <= 1 and sum(d["found_by"].values()) > 0
        assert f"align.detector {det}" in text
    assert res["by_detector"]["cascade"]["found_by"]["cnn"] == 0
    assert (tmp_path / "work").is_dir() and not any((tmp_path / "work").iterdir())  # cleaned up
    assert (
        res["pipeline_shards_scaling_2_over_1"]
        == res["pipeline_2shards_img_s"] / res["pipeline_img_s"]
    )
