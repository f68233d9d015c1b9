"""The README as a front page: what this is, the answer and its figure, the commands a newcomer
types (working in a new shell), where to look; short enough to read without scrolling far. The
figures it shows are made from the published metrics, and the captions of both reports from one
source."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT
from test_docs_commands import commands
from test_pipeline import COPY, copy_repo

from maskprivacy.report import captions
from maskprivacy_workflow import published

README = ROOT / "README.md"
VENV = ROOT / ".venv"
NO_VENV = "no .venv in the checkout (make setup makes it; the README's commands activate it)"


def test_the_readme_is_a_front_page():
    text = README.read_text()
    lines = text.splitlines()
    assert len(lines) <= 120
    prose = [line for line in lines if line.strip() and not line.lstrip().startswith("|")]
    long = [len(line) for line in prose if len(line) > 300]
    assert not long, f"prose lines over 300 characters: {long}"
    # the answer, its figure and the first command come before anything else of length
    where = {key: text.index(key) for key in ("**No.**", "docs/img/answer.svg", "make demo")}
    assert where["**No.**"] < where["docs/img/answer.svg"] < where["make demo"]
    assert text[: where["make demo"]].count("\n") <= 50, "make demo comes too far down"
    assert len(re.findall(r"^\|", text[: where["make demo"]], re.M)) == 0  # no table before it
    # every figure it shows is in the repository
    for src in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", text):
        assert (ROOT / src).is_file(), src
    # a new shell has no venv on its PATH: the page says to activate it before snakemake
    cmds = commands(text)
    first_snakemake = next(i for i, c in enumerate(cmds) if c.startswith("snakemake"))
    assert "source .venv/bin/activate" in cmds[:first_snakemake]


def new_shell(cwd: Path, script: str) -> subprocess.CompletedProcess:
    """``script`` in a new bash as a person's terminal starts it: no venv on PATH, no
    PYTHONPATH, nothing of this test's environment but HOME."""
    env = {
        "HOME": os.environ.get("HOME", "/root"),
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "DVC_NO_ANALYTICS": "1",
        "MPLBACKEND": "Agg",
    }
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-e", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def line(*words: str) -> str:
    """One line of a shell script, of ``words``."""
    return shlex.join(words)


@pytest.mark.slow
def test_the_readme_commands_run_as_typed_in_a_new_shell(tmp_path):
    """The README's commands in one new shell, in a copy of the checkout whose .venv is the
    repository's: its activation line puts snakemake and dvc on PATH, then its real-data
    commands, as written plus -n, plan the whole run (an empty file stands in for
    data/UTKFace.tar.gz). `make demo` and the report of a finished run are run elsewhere
    (tests/test_docs_commands.py says where)."""
    if not (VENV / "bin/activate").is_file():
        pytest.skip(NO_VENV)
    root = copy_repo(tmp_path, [*COPY, "presets"])
    (root / ".venv").symlink_to(VENV)
    (root / "data").mkdir(exist_ok=True)
    (root / "data/UTKFace.tar.gz").write_bytes(b"")
    shown = commands(README.read_text())
    real = [c for c in shown if c.startswith("snakemake --cores all --configfile")]
    assert len(real) >= 1 and shown.index("source .venv/bin/activate") < shown.index(real[0])
    script = [line("source", ".venv/bin/activate"), line("command", "-v", "snakemake", "dvc")]
    script += [f"{cmd} -n" for cmd in real]
    res = new_shell(root, "\n".join(script))
    out = res.stdout + res.stderr
    assert res.returncode == 0, f"{script}\n{out[-4000:]}"
    assert f"{VENV}/bin/snakemake" in out and f"{VENV}/bin/dvc" in out, out[:2000]
    assert out.count("compare") >= len(real), out[-4000:]  # each plans the run to its report


def test_the_figures_are_made_from_the_published_metrics():
    """docs/img/: each figure a page links to is what the published metrics (and the demo
    portrait) give, like the published blocks (`published render --check`)."""
    linked = published.linked_figures(ROOT)
    assert {"docs/img/answer.svg", "docs/img/mask-study.svg", "docs/img/masks.png"} <= set(linked)
    assert published.render_figures(ROOT, check=True) == []


def test_a_changed_metric_makes_a_figure_stale(tmp_path):
    """The drift check sees a figure that no longer matches the metrics."""
    import shutil

    root = tmp_path / "repo"
    (root / "docs/img").mkdir(parents=True)
    run = root / published.REFERENCE / "cpu-study-tta"
    shutil.copytree(ROOT / published.REFERENCE / "cpu-study-tta", run)
    (root / "README.md").write_text("![answer](docs/img/answer.svg)\n")
    assert published.render_figures(root) == [root / "docs/img/answer.svg"]
    assert published.render_figures(root, check=True) == []
    svg = (root / "docs/img/answer.svg").read_text()
    assert "91.7" in svg and "chance 52.2%" in svg  # the unmasked CNN's sex accuracy, chance
    st = json.loads((run / "statistics.json").read_text())
    st["conditions"]["unmasked"]["seed_mean"]["sex"]["estimate"] += 0.01  # a metric moves
    (run / "statistics.json").write_text(json.dumps(st))
    assert published.render_figures(root, check=True) == [root / "docs/img/answer.svg"]


def test_both_reports_take_their_captions_from_one_source():
    """workflow/report/*.rst (Snakemake's report) are made from maskprivacy.report.captions, the
    captions of results/report.html, and name no figure by its file name alone."""
    for path, text in captions.rst_files().items():
        assert (ROOT / path).read_text() == text, f"{path} is stale: python -m {captions.__name__}"
    for name in (
        "forest",
        "comparison",
        "learning_curves",
        "groups_masked_vs_unmasked",
        "study_sex_accuracy",
        "confusion_race_masked_seed1",
        "age_masked_seed0",
        "rejects",
        "masks",
    ):
        text = captions.caption(name)
        assert text != name and text.endswith(".") and len(text.split()) >= 12, text
    assert "masked minus unmasked" in captions.caption("groups_masked_vs_unmasked")
    assert "seed 1" in captions.caption("confusion_race_masked_seed1")
