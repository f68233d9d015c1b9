"""Shared fixtures: small data sets the tests make themselves (never ../shared)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

BAD_FILES = {
    # name -> (stage, reason) it must end in the rejects table with
    "30_0_0_20170101000000001.jpg.chip.jpg": ("align", "decode_error"),  # truncated JPEG
    "31_1_1_20170101000000002.jpg.chip.jpg": ("align", "decode_error"),  # zero bytes
    "32_0_2_20170101000000003.jpg.chip.jpg": ("align", "decode_error"),  # text named .jpg
    "33_1_3_20170101000000004.jpg.chip.jpg": ("align", "no_face"),  # noise, no face
    "not_a_utkface_name.jpg": ("download", "bad_name"),
}


def write_tree(root: Path, files: dict[str, str]) -> None:
    """Write ``files`` (relative path -> text) under ``root``, making their folders."""
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def write_bad_files(folder: Path, good_example: Path) -> None:
    """Add one file of each kind of bad input to ``folder``."""
    names = list(BAD_FILES)
    data = good_example.read_bytes()
    (folder / names[0]).write_bytes(data[: len(data) // 3])
    (folder / names[1]).write_bytes(b"")
    (folder / names[2]).write_text("this is not an image\n")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(folder / names[3])
    Image.open(good_example).save(folder / names[4])


@pytest.fixture(scope="session")
def demo_folder(tmp_path_factory) -> Path:
    """48 demo faces (labels tied to visible cues) plus one file of each kind of bad input."""
    from maskprivacy.datasets import demo

    folder = tmp_path_factory.mktemp("demo_inputs")
    paths = demo.generate(folder, n_images=48, seed=3, progress=False)
    write_bad_files(folder, paths[0])
    return folder
