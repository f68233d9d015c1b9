"""presets/cpu.yaml: the whole study on real UTKFace on a CPU, as `snakemake --cores all
--configfile presets/cpu.yaml` plans it (a dry run on a copy with a stand-in archive)."""

from __future__ import annotations

import re

import yaml
from conftest import ROOT
from test_pipeline import BIN, COPY, copy_repo, sh

from maskprivacy.core.params import validate


def preset(name: str) -> dict:
    return yaml.safe_load((ROOT / "presets" / name).read_text())


def plan(folder, *configfiles: str) -> tuple[str, dict[str, str]]:
    """``snakemake -n`` with these configfiles in a copy: its output and its job counts."""
    res = sh(folder, str(BIN / "snakemake"), "-n", "--cores", "2", "--configfile", *configfiles)
    return res.stdout, dict(re.findall(r"^(\w+)\s+(\d+)$", res.stdout, re.M))


def test_cpu_preset_is_the_utkface_study_with_the_cpu_attacker():
    cpu, gpu = preset("cpu.yaml"), preset("utkface.yaml")
    validate(cpu)
    # the same data, masks, split, conditions and statistics as the GPU preset: comparable runs
    for section in ("download", "align", "mask", "identity", "split", "compare"):
        assert cpu[section] == gpu[section], section
    without_tta = [{k: v for k, v in p["evaluate"].items() if k != "tta"} for p in (cpu, gpu)]
    assert without_tta[0] == without_tta[1]
    # the CPU attacker's predictions: each face and its mirror image (evaluate.tta)
    assert cpu["evaluate"]["tta"] == "flip"
    # the hour goes to the CNN; presets/recognizer.yaml adds the second attacker
    assert cpu["recognize"]["enabled"] is False
    assert cpu["train"]["seeds"] == [0, 1, 2]
    assert {c["name"] for c in cpu["evaluate"]["conditions"]} == {
        "unmasked",
        "masked",
        "unmasked_to_masked",
        "masked_to_unmasked",
    }
    # the CPU attacker: the network and input the time-to-accuracy sweep chose
    t = cpu["train"]
    assert (t["arch"], t["image_size"]) == ("resnet18", 64)
    # bf16 where the CPU has it natively, fp32 where torch would emulate it (15x slower)
    assert cpu["compute"]["precision"] == "auto"


def test_auto_precision_is_bf16_only_where_the_cpu_computes_it(tmp_path, monkeypatch, caplog):
    import torch

    from maskprivacy.model import config

    avx2 = tmp_path / "avx2"
    avx2.write_text("processor : 0\nflags : fpu sse2 avx avx2 fma avx512f\n")
    bf16 = tmp_path / "bf16"
    bf16.write_text("processor : 0\nflags : fpu sse2 avx avx2 avx512f avx512_bf16\n")
    assert config.cpu_has_native_bf16(str(avx2)) is False
    assert config.cpu_has_native_bf16(str(bf16)) is True
    assert config.cpu_has_native_bf16(str(tmp_path / "none")) is False  # not Linux: fp32
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    for native, expected in ((False, "fp32"), (True, "bf16")):
        monkeypatch.setattr(config, "cpu_has_native_bf16", lambda native=native: native)
        assert config.resolve_precision(cpu, "auto") == expected
        assert config.resolve_precision(cuda, "auto") == "bf16"
        assert config.resolve_precision(cpu, "fp32") == "fp32"
    # asked for bf16 on a CPU that emulates it: kept, and the log says what it costs
    monkeypatch.setattr(config, "cpu_has_native_bf16", lambda: False)
    config._warn_slow_bf16.cache_clear()
    with caplog.at_level("WARNING"):
        assert config.resolve_precision(cpu, "bf16") == "bf16"
    assert "15x slower than fp32" in caplog.text and "precision: auto" in caplog.text
    with config.autocast(cpu, "auto"):
        assert not torch.is_autocast_enabled("cpu")


def test_cpu_preset_plans_six_models_and_twelve_evaluations(tmp_path):
    copy_repo(tmp_path, [*COPY, "presets"])
    (tmp_path / "data").mkdir()
    (tmp_path / "data/UTKFace.tar.gz").write_bytes(b"a stand-in: a dry run reads no input")
    _, counts = plan(tmp_path, "presets/cpu.yaml")
    assert counts["train"] == "6" and counts["evaluate"] == "12" and counts["compare"] == "1"
    assert counts["align"] == "16"  # align.shards
    assert "describe" not in counts and "recognize" not in counts and "identity" not in counts
    # presets/recognizer.yaml adds the second attacker: descriptors of both versions, its heads
    _, counts = plan(tmp_path, "presets/cpu.yaml", "presets/recognizer.yaml")
    assert counts["train"] == "6" and counts["recognize"] == "1"
    assert counts["identity"] == "16" and counts["describe"] == "16"  # unmasked; masked, per shard


def test_cpu_attacker_overlay_is_the_cpu_presets_network():
    """presets/cpu_attacker.yaml layered on utkface.yaml gives cpu.yaml: the same attacker on
    any preset (the mask study, the paper's protocol) by one more --configfile."""
    from snakemake.utils import update_config

    merged = preset("utkface.yaml")
    update_config(merged, preset("cpu_attacker.yaml"))
    cpu = preset("cpu.yaml")
    assert merged["train"] == cpu["train"] and merged["compute"] == cpu["compute"]
    assert merged["evaluate"] == cpu["evaluate"]  # tta: flip
    # on the mask study it changes the network only: its sets, conditions and seeds stay
    study = preset("mask_study.yaml")
    merged = preset("mask_study.yaml")
    update_config(merged, preset("cpu_attacker.yaml"))
    validate(merged)
    assert merged["mask"] == study["mask"]
    assert merged["evaluate"] == {**study["evaluate"], "tta": "flip"}
    assert merged["train"]["seeds"] == study["train"]["seeds"]
    assert (merged["train"]["arch"], merged["train"]["image_size"]) == ("resnet18", 64)


def test_overlays_plan_one_model_per_set_and_no_recognizer(tmp_path):
    """The mask study with the CPU attacker, one seed, the CNN only, as a user layers them."""
    copy_repo(tmp_path, [*COPY, "presets"])
    (tmp_path / "data").mkdir()
    (tmp_path / "data/UTKFace.tar.gz").write_bytes(b"a stand-in: a dry run reads no input")
    overlays = ["cpu_attacker.yaml", "one_seed.yaml", "cnn_only.yaml"]
    stdout, counts = plan(tmp_path, "presets/mask_study.yaml", *[f"presets/{o}" for o in overlays])
    assert counts["train"] == "7" and counts["evaluate"] == "49"  # unmasked + 6 sets, seed 0
    assert "describe" not in counts and "recognize" not in counts
    assert "train/unmasked/seed0" in stdout and "seed1" not in stdout
