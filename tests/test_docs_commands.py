"""Every command shown in README.md and docs/*.md (each line of a ```bash block) is run by a test
as written, or says here why the suite cannot run it (a GPU node, conda, the whole install).

A command that a page gains, or loses, fails this test until it is listed below: a page cannot
show a command nobody runs. The real-data commands (UTKFace may not be redistributed) are run
here as written plus ``-n``: Snakemake plans the whole run from the preset, with an empty file
standing in for ``data/UTKFace.tar.gz``.
"""

from __future__ import annotations

import re
import subprocess

import pytest
from conftest import ROOT
from test_pipeline import BIN, COPY, copy_repo, env

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# command as a page writes it -> (the test file that runs it, what that file holds of it: the
# command's words as the test passes them; the reduced demo's tests give --cores 2 for all)
RUN_BY_TEST = {
    "snakemake --cores all": ("tests/usercopy.py", '[str(BIN / "snakemake"), "--cores", "2"]'),
    "snakemake --report report.html": ("tests/test_pipeline.py", '"--report", "report.html"'),
    "source .venv/bin/activate": ("tests/test_front_page.py", '"source", ".venv/bin/activate"'),
    "snakemake --workflow-profile profiles/slurm": (
        "tests/test_slurm.py",
        '["snakemake", "--workflow-profile", "profiles/slurm"]',
    ),
    "snakemake --workflow-profile profiles/slurm --set-resources train:gpu=0 evaluate:gpu=0 "
    "train:mem_mb=6000 --set-threads download=2 train=2 evaluate=2 "
    "--slurm-init-seconds-before-status-checks 2": (
        "tests/test_slurm.py",
        '"--set-resources", "train:gpu=0", "evaluate:gpu=0", "train:mem_mb=6000",\n'
        '    "--set-threads", "download=2", "train=2", "evaluate=2",\n'
        '    "--slurm-init-seconds-before-status-checks", "2",',
    ),
    "dvc repro": ("tests/test_commands.py", 'sh(root, DVC, "repro")'),
    "dvc metrics diff": ("tests/test_commands.py", 'sh(root, DVC, "metrics", "diff")'),
    "dvc params diff": ("tests/test_commands.py", 'sh(root, DVC, "params", "diff")'),
    "dvc exp run -S train.epochs=4": ("tests/test_commands.py", '"exp", "run", "-S"'),
    "dvc exp run -S train.epochs=2 && dvc exp run -S train.epochs=8": (
        "tests/test_commands.py",
        '"exp", "run", "-S", f"train.epochs={epochs}"',
    ),
    "dvc exp show": ("tests/test_commands.py", '"exp", "show"'),
    "dvc plots diff": ("tests/test_commands.py", '"plots", "diff"'),
    "dvc plots diff HEAD~1": ("tests/test_commands.py", '"plots", "diff", "HEAD~1"'),
    "make dvc-adopt": ("tests/test_commands.py", '"make", "dvc-adopt"'),
    "make snakemake-adopt": ("tests/test_commands.py", '"make", "snakemake-adopt"'),
    "dvc push": ("tests/test_commands.py", 'DVC, "push"'),
    'git add dvc.lock results/metrics.json && git commit -m "run"': (
        "tests/usercopy.py",
        '"commit", "-qm", message',
    ),
    'git commit -am "4 epochs"': ("tests/test_commands.py", 'commit(root, "2 epochs")'),
    "dvc remote add -d s3 s3://BUCKET/maskprivacy": (
        "tests/test_commands.py",
        '"remote", "add", "-d", "s3"',
    ),
    "dvc remote modify s3 endpointurl https://...": (
        "tests/test_commands.py",
        '"remote", "modify", "s3", "endpointurl", url',
    ),
    "make lint": ("tests/test_workflow_files.py", '"--lint"'),
    "python -m maskprivacy.analysis.paper_protocol table "
    '"paper protocol, duplicates dropped=results/compare/statistics.json" '
    '"paper protocol, duplicates kept=../maskprivacy-keepdups/results/compare/statistics.json"': (
        "tests/test_paper_protocol.py",
        '"-m", "maskprivacy.analysis.paper_protocol", "table"',
    ),
    "python benchmarks/cpu_attacker.py --workdir . --budget-min 8 --configs resnet18:64:bf16 "
    "resnet18:80:bf16 resnet34:64:bf16 resnet18:64:fp32": (
        "tests/test_benchmarks.py",
        '"cpu_attacker.py",\n        ["--workdir", str(tmp_path), "--configs", *configs,',
    ),
    "python -m maskprivacy_workflow.published add cpu-study --command "
    '"snakemake --cores all --configfile presets/cpu.yaml" --machine "2-core AMD EPYC" '
    "--wall-min 60": (
        "tests/test_published.py",
        '"add", "cpu-study", "--workdir", run, "--command"',
    ),
    "python -m maskprivacy_workflow.published render": (
        "tests/test_published.py",
        'main("--root", root, "render")',
    ),
    # = python -m maskprivacy_workflow.wheelhouse .gpu/wheels
    "make wheelhouse": ("tests/test_wheelhouse.py", "wheelhouse.main([str(tmp_path)"),
    "smk/bin/pip install --no-index --find-links wheels --no-deps -r wheels/requirements.txt": (
        "tests/test_wheelhouse.py",
        '"install", "-q", "--no-index", "--find-links"',
    ),
}

# real UTKFace: planned here as written plus -n (test_real_data_commands_plan_the_whole_run)
DRY_RUN = [
    "snakemake --cores all --configfile presets/cpu.yaml",
    "snakemake --cores all --configfile presets/cpu.yaml presets/recognizer.yaml",
    "snakemake results/recognize/report.json --cores all --configfile presets/cpu.yaml "
    "presets/recognizer.yaml",
    "snakemake --cores all results/recognize/report.json",
    "snakemake --cores all --configfile presets/cpu.yaml presets/recognizer_mlp.yaml",
    "snakemake --cores all --configfile presets/utkface.yaml presets/identity.yaml",
    "snakemake --cores all --configfile presets/utkface.yaml presets/identity.yaml --until split",
    "snakemake --cores all --configfile presets/mask_study.yaml",
    "snakemake --cores all --configfile presets/mask_study.yaml presets/cpu_attacker.yaml "
    "presets/one_seed.yaml presets/cnn_only.yaml",
    "snakemake --cores all --configfile presets/cpu.yaml presets/identity.yaml "
    "presets/one_seed.yaml presets/cnn_only.yaml",
    "snakemake --cores all --configfile presets/paper.yaml",
    "snakemake --cores all --configfile presets/paper.yaml presets/cpu_attacker.yaml "
    "presets/cnn_only.yaml",
    "snakemake --cores all --configfile presets/paper_keepdups.yaml",
]

# what the suite cannot run as written, and why (each has a test of what can be tested here)
NOT_HERE = {
    "make demo": "the whole install (about 7 GB, PyPI); its pipeline is `snakemake --cores all`, "
    "run by tests/usercopy.py, and its venv is what the suite runs in",
    "make test": "the suite itself",
    "make repro": "`dvc repro` after `make setup`: dvc repro is run by tests/test_commands.py",
    "snakemake --cores all --use-conda": "no conda on the test machines; tests/test_envs.py checks "
    "each rule's env against the imports of its code and tests/test_workflow_files.py its pins",
    "python -m venv --system-site-packages smk": "an offline GPU node's venv; tests/test_wheelhouse.py "
    "builds one offline from the wheelhouse and runs snakemake --version",
    "smk/bin/snakemake --cores all --scheduler greedy --configfile presets/utkface.yaml": "real "
    "UTKFace on an offline GPU node (benchmarks/gpu_session.sh); the preset is planned here "
    "(DRY_RUN) and the wheelhouse tested by tests/test_wheelhouse.py",
}


def commands(text: str) -> list[str]:
    """The commands of a page's ```bash blocks: one per line (a line continued with a backslash
    joined), comments and blank lines left out, spaces collapsed."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                found.append(re.sub(r"\s+", " ", re.split(r"\s+#\s", line, maxsplit=1)[0]).strip())
    return found


def shown() -> dict[str, list[str]]:
    """Command -> the pages that show it."""
    where: dict[str, list[str]] = {}
    for page in PAGES:
        for cmd in commands(page.read_text()):
            where.setdefault(cmd, []).append(str(page.relative_to(ROOT)))
    return where


def test_every_command_a_page_shows_is_run_by_a_test_or_says_why_not():
    where = shown()
    listed = {*RUN_BY_TEST, *DRY_RUN, *NOT_HERE}
    unlisted = {c: p for c, p in where.items() if c not in listed}
    assert not unlisted, f"commands shown but run by no test (list them here): {unlisted}"
    stale = sorted(listed - set(where))
    assert not stale, f"listed here but shown on no page: {stale}"


def test_the_tests_named_run_those_commands():
    for cmd, (test, words) in RUN_BY_TEST.items():
        assert words in (ROOT / test).read_text(), f"{test} does not run {cmd!r} ({words})"


def test_the_readme_shows_the_two_commands_and_where_to_look():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    cmds = commands(readme)
    assert "make demo" in cmds and "snakemake --cores all --configfile presets/cpu.yaml" in cmds
    for look in ("results/report.html", "results/metrics.json", "snakemake --report report.html"):
        assert look in readme
    for page in sorted((ROOT / "docs").glob("*.md")):  # every page of docs/ is on the map
        assert f"(docs/{page.name})" in readme, page.name


def test_links_between_pages_lead_to_pages_that_exist():
    # docs/recognizer.md and docs/wild-faces.md come with their own issues (22, 23)
    later = {"recognizer.md", "wild-faces.md"}
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)", page.read_text()):
            path = (page.parent / target).resolve()
            assert path.is_file() or path.name in later, f"{page.name}: {target}"


@pytest.mark.slow
def test_real_data_commands_plan_the_whole_run(tmp_path):
    root = copy_repo(tmp_path, [*COPY, "presets"])
    (root / "data").mkdir(exist_ok=True)
    (root / "data/UTKFace.tar.gz").write_bytes(b"")  # stands in for the archive: planned, not read
    for cmd in DRY_RUN:
        args = cmd.split()
        res = subprocess.run(
            [str(BIN / args[0]), *args[1:], "-n"],
            cwd=root,
            env=env(),
            capture_output=True,
            text=True,
        )
        out = res.stdout + res.stderr
        assert res.returncode == 0, f"{cmd} -n:\n{out}"
        assert "download" in out, out
        if "--until" not in cmd and ".json" not in cmd:  # a target of its own
            assert "compare" in out, f"{cmd} -n plans no compare:\n{out}"
