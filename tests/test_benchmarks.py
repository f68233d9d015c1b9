"""The benchmark scripts run on CPU with small sizes (CI has no GPU) and print their figures."""

import json
import math
import runpy
import sys
from pathlib import Path

import pytest
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


N_VAL, N_TRAIN = 12, 35  # coprime: a figure over the validation faces is k / 12, not k / 35


def attacker_workdir(tmp_path: Path) -> Path:
    """A finished run's folder as cpu_attacker.py reads it: aligned faces and a split (12
    validation faces, both sexes, 35 training faces)."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    rng = np.random.default_rng(0)
    images = tmp_path / "data" / "align" / "0" / "images"
    images.mkdir(parents=True)
    rows = []
    for i in range(N_VAL + N_TRAIN):
        name = f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(images / name)
        rows.append(
            {
                "file": name,
                "sex": i // 4 % 2,
                "race": i % 5,
                "age": 10 + i,
                "split": "val" if i % 4 == 0 else "train",
            }
        )
    (tmp_path / "data" / "split").mkdir()
    pd.DataFrame(rows).to_csv(tmp_path / "data/split/split.csv", index=False)
    return tmp_path


def run_attacker(tmp_path: Path, capsys, *args: str) -> tuple[str, list]:
    """cpu_attacker.py with ``args`` on a workdir the test makes: its printout and the rows of
    its --json."""
    attacker_workdir(tmp_path)
    out = run_script("cpu_attacker.py", [*args, "--json", str(tmp_path / "out.json")], capsys)
    return out, json.loads((tmp_path / "out.json").read_text())["rows"]


def test_cpu_attacker_sweeps_speed_and_accuracy(tmp_path, capsys):
    """benchmarks/cpu_attacker.py on a workdir the test makes (batch 8, one step per speed
    figure): every configuration gets its ceiling beside the pipeline's step, an epoch count
    fitted to the budget, and its metrics on the 12 validation faces."""
    out, got = run_attacker(
        tmp_path, capsys, "--workdir", str(tmp_path), "--budget-min", "0.02",
        "--configs", "resnet18:32:bf16", "resnet18:32:fp32", "--batch-size", "8", "--steps", "1",
    )  # fmt: skip
    assert "| network | input | precision | epochs |" in out and "ceiling" in out
    assert [(r["arch"], r["precision"]) for r in got] == [
        ("resnet18", "bf16"),
        ("resnet18", "fp32"),
    ]
    for r in got:
        assert r["epochs"] >= 1 and r["ceiling_img_s"] > 0 and r["ratio"] > 0
        assert r["rounds"] == 5  # the step and its ceiling, measured in alternation
        for acc in (r["val_sex_acc"], r["val_race_acc"]):  # right on k of the 12, not of 35
            assert 0 <= acc <= 1 and acc * N_VAL == pytest.approx(round(acc * N_VAL), abs=1e-6)
        assert math.isfinite(r["val_age_mae"]) and r["val_age_mae"] > 0
        assert f"val sex {100 * r['val_sex_acc']:.1f}%, race {100 * r['val_race_acc']:.1f}%" in out


def test_cpu_attacker_speed_only_trains_nothing(tmp_path, capsys):
    """--speed-only: the step against its ceiling, in the rounds asked for; no epoch, no val."""
    out, (row,) = run_attacker(
        tmp_path, capsys, "--workdir", str(tmp_path), "--configs", "resnet18:32:bf16",
        "--batch-size", "8", "--steps", "1", "--rounds", "3", "--speed-only",
    )  # fmt: skip
    assert "| step / ceiling |" in out and "val sex" not in out
    assert row["rounds"] == 3 and row["ratio"] > 0 and row["ceiling_contiguous"] > 0
    assert "epochs" not in row and "val_race_acc" not in row


def test_cpu_attacker_refuses_a_malformed_configuration(tmp_path, capsys):
    ns = runpy.run_path(str(ROOT / "benchmarks" / "cpu_attacker.py"), run_name="cpu_attacker")
    with pytest.raises(SystemExit) as exit_:
        ns["main"](["--workdir", str(tmp_path), "--configs", "resnet18-64"])
    assert exit_.value.code == 2
    assert "is not arch:size:precision" in capsys.readouterr().err
