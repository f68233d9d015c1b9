"""Odd image files through every stage that reads images: ``download`` (its near-duplicate hash
decodes each file), an external test set (``external``, then ``align`` as the set's jobs run it:
no prior box, the CNN at its default levels) and ``align`` with UTKFace's preset (the prior box,
then dlib's CNN detector in its helper process on the cascade's misses).

What a user relies on: each input ends in the stage's output or in its rejects table with a
reason, and nothing else fails (no stage error, no lost file). The inputs: images of 1 x 1,
8 x 8, 1 x 500 and 10,000 x 10 pixels; a face as a palette, RGBA, 16-bit grey and CMYK image and
rotated by its EXIF orientation; a truncated JPEG, an empty file and a folder named like an
image. A face that converts without loss (palette, RGBA, CMYK) is aligned.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT
from PIL import Image
from test_download import cfg_for, run_stage

from maskprivacy.core.io import read_table
from maskprivacy.datasets import external
from maskprivacy.stages import align as align_stage
from maskprivacy.stages.entry import Compute, Files, StageConfig

ALIGNED = "aligned"
REJECTED = "a reject with its reason"  # which reason is the stage's to say


def noise(height: int, width: int) -> Image.Image:
    rng = np.random.default_rng(height * 7919 + width)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


def grey16(face: Image.Image) -> Image.Image:
    """The face as a 16-bit grey PNG (mode I;16), the full range used."""
    return Image.fromarray(np.asarray(face.convert("L")).astype(np.uint16) * 257)


def exif_rotated(face: Image.Image, path: Path) -> None:
    """The face stored turned a quarter, with the EXIF orientation (8) that shows it upright."""
    exif = Image.Exif()
    exif[0x0112] = 8  # Orientation: the stored picture turned a quarter counter-clockwise to view
    face.transpose(Image.Transpose.ROTATE_270).save(path, format="JPEG", quality=95, exif=exif)


def truncated(face: Image.Image, path: Path) -> None:
    face.save(path, format="JPEG", quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


# name -> (how to make it from a demo face, what align does with it)
Maker = Callable[[Image.Image, Path], None]


def saved(make: Callable[[Image.Image], Image.Image], fmt: str) -> Maker:
    return lambda face, path: make(face).save(path, format=fmt)


ODD: dict[str, tuple[Maker, str]] = {
    "40_0_0_20170101000000001.jpg.chip.jpg": (saved(lambda f: noise(1, 1), "PNG"), REJECTED),
    "40_0_0_20170101000000002.jpg.chip.jpg": (saved(lambda f: noise(8, 8), "PNG"), REJECTED),
    "40_0_0_20170101000000003.jpg.chip.jpg": (saved(lambda f: noise(500, 1), "PNG"), REJECTED),
    "40_0_0_20170101000000004.jpg.chip.jpg": (saved(lambda f: noise(10, 10_000), "PNG"), REJECTED),
    "40_0_0_20170101000000005.jpg.chip.jpg": (saved(lambda f: f.convert("P"), "PNG"), ALIGNED),
    "40_0_0_20170101000000006.jpg.chip.jpg": (saved(lambda f: f.convert("RGBA"), "PNG"), ALIGNED),
    # scaled to 8 bits, not clipped at 255 (Pillow's conversion would turn the face white)
    "40_0_0_20170101000000007.jpg.chip.jpg": (saved(grey16, "PNG"), ALIGNED),
    "40_0_0_20170101000000008.jpg.chip.jpg": (saved(lambda f: f.convert("CMYK"), "JPEG"), ALIGNED),
    # turned upright by its EXIF orientation, as a viewer shows it
    "40_0_0_20170101000000009.jpg.chip.jpg": (exif_rotated, ALIGNED),
    "40_0_0_20170101000000010.jpg.chip.jpg": (truncated, REJECTED),
    "40_0_0_20170101000000011.jpg.chip.jpg": (lambda face, path: path.write_bytes(b""), REJECTED),
}
FOLDER = "40_0_0_20170101000000012.jpg.chip.jpg"  # a folder named like an image
WHAT = dict(
    zip(
        ODD,
        ["1x1", "8x8", "1x500", "10000x10", "palette", "rgba", "16bit", "cmyk", "exif", "truncated"]
        + ["empty"],
        strict=True,
    )
)


@pytest.fixture(scope="module")
def odd_folder(tmp_path_factory, demo_folder) -> Path:
    """Every odd input, named like UTKFace, each made from a demo face of its own (one face's
    variants would be near duplicates, of which the download keeps one), and one good face."""
    folder = tmp_path_factory.mktemp("odd") / "in"
    folder.mkdir()
    good = sorted(demo_folder.glob("[0-9]*_2026*.jpg"))
    for (name, (make, _)), path in zip(ODD.items(), good, strict=False):
        with Image.open(path) as im:
            make(im.convert("RGB"), folder / name)
    (folder / FOLDER).mkdir()
    (folder / good[-1].name).write_bytes(good[-1].read_bytes())
    return folder


def outcome(
    images: Path, landmarks: pd.DataFrame, rejects: pd.DataFrame, name: str, size: int
) -> str:
    """Where ``name`` ended: aligned (its crop written), or rejected with a reason and detail;
    fails when it is in neither table, or in both."""
    aligned, rejected = landmarks["file"].eq(name).sum(), rejects["file"].eq(name).sum()
    assert aligned + rejected == 1, (name, aligned, rejected)
    if aligned:
        with Image.open(images / name) as im:
            assert im.size == (size, size) and im.mode == "RGB"
        return ALIGNED
    row = rejects.set_index("file").loc[name]
    assert row["stage"] == "align" and row["reason"] and row["detail"], row.to_dict()
    return REJECTED


def test_download_keeps_or_rejects_each_odd_input(odd_folder, tmp_path):
    """The download copies each file (decoding only for the near-duplicate hash, which skips
    what it cannot decode) and rejects the folder; decoding is align's."""
    summary, manifest, rejects = run_stage(cfg_for(path=str(odd_folder)), tmp_path / "out")
    assert sorted(manifest["file"]) == sorted(p.name for p in odd_folder.iterdir() if p.is_file())
    assert rejects[["file", "reason"]].values.tolist() == [[FOLDER, "not_a_regular_file"]]
    assert summary["n_inputs"] == len(ODD) + 2
    assert summary["duplicates"]["n_undecodable"] == 2  # the truncated and the empty file


def test_external_set_keeps_or_rejects_each_odd_input(odd_folder, tmp_path):
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"file": [*ODD, FOLDER], "gender": "Male", "age": 40}).to_csv(labels, index=False)
    out = tmp_path / "ext"
    cfg = {"path": str(odd_folder), "labels": str(labels)}
    external.run(cfg, out / "images", out / "manifest.csv", out / "rejects.csv")
    manifest, rejects = read_table(out / "manifest.csv"), read_table(out / "rejects.csv")
    assert set(manifest["file"]) == set(ODD)
    assert (manifest["sex"] == 0).all() and (manifest["age"] == 40).all()
    # the folder as an entry and as the row that names it; the good face, which no row names
    good = next(p.name for p in odd_folder.iterdir() if p.is_file() and p.name not in ODD)
    assert sorted(rejects[["file", "reason"]].values.tolist()) == [
        [FOLDER, "file_missing"],
        [FOLDER, "not_a_regular_file"],
        [good, "no_label_row"],
    ]
    assert rejects["detail"].notna().all()


def align_job(folder: Path, name: str, out: Path, source: str) -> dict:
    """The align stage on the one input ``name`` of ``folder``, as a job runs it with UTKFace's
    preset (pre-aligned crops: the prior box, the CNN on halved images), or as an external
    set's job under that preset (``source``); its outputs under ``out``."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())["align"]
    params |= yaml.safe_load((ROOT / "presets/utkface.yaml").read_text())["align"]
    params |= {"size": 64, "shards": 1}
    wildcards = {"shard": "0"} | ({"ext": "odd"} if source == "external" else {})
    out.mkdir()
    pd.DataFrame({"file": [name]}).to_csv(out / "manifest.csv", index=False)
    return align_stage.run(
        StageConfig(params=params, wildcards=wildcards, compute=Compute(threads=1)),
        Files(images=str(folder), manifest=str(out / "manifest.csv"), landmarks=[]),
        Files(images=out / "images", landmarks=out / "lm.csv", rejects=out / "rejects.csv"),
        logging.getLogger("test"),
    )


CASES = [pytest.param(source, name) for source in ("utkface", "external") for name in ODD]


@pytest.mark.parametrize(
    "source, name", CASES, ids=[f"{c.values[0]}-{WHAT[c.values[1]]}" for c in CASES]
)
def test_align_ends_each_odd_input_in_a_table(odd_folder, tmp_path, source, name):
    """One odd input through the align stage as its job runs it: aligned, or a reject with its
    reason and detail; the stage itself does not fail."""
    out = tmp_path / "align"
    summary = align_job(odd_folder, name, out, source)
    assert summary["n_inputs"] == 1 and summary["n_aligned"] + summary["n_rejects"] == 1
    got = outcome(
        out / "images", read_table(out / "lm.csv"), read_table(out / "rejects.csv"), name, 64
    )
    assert got == ODD[name][1], (WHAT[name], got)


def test_align_rejects_a_folder_named_like_an_image(odd_folder, tmp_path):
    """A manifest that names a folder (align's own input, not the download's): decode_error."""
    out = tmp_path / "align"
    align_job(odd_folder, FOLDER, out, "external")
    rejects = read_table(out / "rejects.csv")
    assert rejects[["file", "reason"]].values.tolist() == [[FOLDER, "decode_error"]]
    assert "directory" in rejects["detail"][0].lower()
