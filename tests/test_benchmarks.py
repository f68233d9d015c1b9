"""The benchmark scripts run on CPU with small sizes (CI has no GPU) and print their figures."""

import json
import runpy
import sys

from conftest import ROOT


def run_script(name, args, capsys):
    argv = sys.argv
    sys.argv = [name, *args]
    try:
        runpy.run_path(str(ROOT / "benchmarks" / name), run_name="__main__")
    except SystemExit as exit_:
        assert exit_.code in (0, None)
    finally:
        sys.argv = argv
    return capsys.readouterr().out


def test_train_throughput_runs_on_cpu(tmp_path, capsys, demo_folder):
    from conftest import BAD_FILES

    faces = tmp_path / "faces"
    faces.mkdir()
    for p in demo_folder.iterdir():
        if p.name not in BAD_FILES:
            (faces / p.name).write_bytes(p.read_bytes())
    out = run_script(
        "train_throughput.py",
        [
            "--device",
            "cpu",
            "--arch",
            "resnet18",
            "--image-size",
            "32",
            "--batch-size",
            "8",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--n-images",
            "32",
            "--eval-images",
            "32",
            "--images",
            str(faces),
            "--json",
            str(tmp_path / "b.json"),
        ],
        capsys,
    )
    assert "ceiling img/s" in out and "pipeline img/s" in out and "eager" in out
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert rows[0]["ceiling_img_s"] > 0 and rows[0]["pipeline_img_s"] > 0
    assert 0 < rows[0]["ratio"]


def test_landmarks_cache_replays_the_stage_and_refuses_other_files(tmp_path, monkeypatch):
    """align with faces from the cache (as on the GPU machine) keeps routes and reasons, and a
    file the cache was not made from stops it with the file's name."""
    import hashlib
    import importlib.util

    import numpy as np
    import pytest
    from PIL import Image

    from maskprivacy.faces import align

    spec = importlib.util.spec_from_file_location(
        "landmarks_cache", ROOT / "benchmarks/landmarks_cache.py"
    )
    cache = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cache)
    monkeypatch.setattr(align, "align_one", align.align_one)  # restored after the test
    monkeypatch.setattr(align, "find_face", align.find_face)

    files = []
    for i, colour in enumerate(((200, 150, 120), (10, 20, 30), (90, 90, 90))):
        f = tmp_path / f"{i}.jpg"
        Image.new("RGB", (100, 100), colour).save(f)
        files.append(f)
    # landmarks for the first file (the warp needs only the eyes); the second has no face
    lm = np.zeros((68, 2), np.float32)
    lm[:, 1] = 40
    lm[36:42, 0], lm[42:48, 0] = 30, 70  # eye centres at (30, 40) and (70, 40)
    sha = [hashlib.sha1(f.read_bytes()).hexdigest() for f in files[:2]]
    np.savez(
        tmp_path / "c.npz",
        sha1=np.array(sha),
        files=np.array([f.name for f in files[:2]]),
        routes=np.array(["upsample0_grey", "no_face"]),
        details=np.array(["", "no frontal face at upsample [0, 1]"]),
        landmarks=np.stack([lm, np.full((68, 2), np.nan, np.float32)]),
    )
    cache.install(tmp_path / "c.npz")
    cfg = {"size": 64, "upsample": [0, 1], "jpeg_quality": 90}
    found = align.align_one(files[0], cfg)
    assert found["ok"] and found["route"] == "upsample0_grey"
    assert np.allclose(found["landmarks"][36:42].mean(axis=0), (0.35 * 64, 0.40 * 64))
    missed = align.align_one(files[1], cfg)
    assert missed == {
        "ok": False,
        "reason": "no_face",
        "detail": "no frontal face at upsample [0, 1]",
    }
    with pytest.raises(KeyError, match="2.jpg"):
        align.align_one(files[2], cfg)
