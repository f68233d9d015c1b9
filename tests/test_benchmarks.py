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
