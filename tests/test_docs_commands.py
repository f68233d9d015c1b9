"""Every command shown in README.md and docs/*.md (each line of a ```bash block; each side of a
``&&`` apart) is run by a test, or says here why the suite cannot run it (a GPU node, conda, the
whole install).

A command that a page gains, or loses, fails this test until it is listed below: a page cannot
show a command nobody runs. "Run by a test" is checked on the test's code, not its text: the
named function passes the command's words to one call (or one list) as its last arguments, and
those words, evaluated (a temp path or a fixture's value reads ``<name>``), are the page's, but
for the values listed in ``swap`` (a smaller value, a temp folder) and the words the test adds
(``extra``). The real-data commands (UTKFace may not be redistributed) are run here as written
plus ``-n``: Snakemake plans the whole run from the preset, with an empty file standing in for
``data/UTKFace.tar.gz``.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import re
import shlex
import subprocess
from typing import NamedTuple

import pytest
from conftest import ROOT
from test_pipeline import BIN, COPY, copy_repo, env
from usercopy import GIT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


class Run(NamedTuple):
    """Where a test runs a command a page shows, and how its words differ from the page's."""

    file: str  # the test file
    function: str  # the function of that file that runs it
    code: str  # the command's words as the function passes them: the last arguments of a call
    swap: dict[str, str] | None = None  # a word of the page -> the test's ("": left out)
    extra: str = ""  # words the test adds, in order
    inprocess: str = ""  # the page's program words, for a test that calls its main() in-process


LOOP = "test_dvc_get_started_loop_diffs_experiments_and_offline_plots"  # DVC's get-started loop
S3 = "test_s3_remote_push_then_pull_in_a_fresh_clone"
SLURM = "test_readme_slurm_command_runs_the_demo_through_sbatch"
WHEELS = "test_wheels_install_offline_and_snakemake_runs"
PUBLISHED = "python -m maskprivacy_workflow.published"
# the overrides of a CPU-only node (README, Running, SLURM) that the SLURM test adds
CPU_NODE = (
    "--set-resources train:gpu=0 evaluate:gpu=0 train:mem_mb=6000 --set-threads download=2 "
    "train=2 evaluate=2 --slurm-init-seconds-before-status-checks 2"
)
IDENTITY = " ".join(GIT[1:])  # git's -c user.email, user.name of the test's commits
EPOCHS = {f"train.epochs={n}": "train.epochs=<epochs>" for n in (2, 4, 8)}

RUN_BY_TEST = {
    "snakemake --cores all": Run(
        "tests/usercopy.py", "run_and_kill_during_train", 'str(BIN / "snakemake"), "--cores", "2"',
        {"all": "2"},
    ),
    "snakemake --report report.html": Run(
        "tests/test_pipeline.py", "snakemake_report",
        'str(BIN / "snakemake"), "--report", "report.html"',
    ),
    "source .venv/bin/activate": Run(
        "tests/test_front_page.py", "test_the_readme_commands_run_as_typed_in_a_new_shell",
        '"source", ".venv/bin/activate"',
    ),
    "snakemake --workflow-profile profiles/slurm": Run(
        "tests/test_slurm.py", SLURM, "str(BIN / README_COMMAND[0]), *README_COMMAND[1:], *CPU_NODE",
        extra=CPU_NODE,
    ),
    f"snakemake --workflow-profile profiles/slurm {CPU_NODE}": Run(
        "tests/test_slurm.py", SLURM, "str(BIN / README_COMMAND[0]), *README_COMMAND[1:], *CPU_NODE"
    ),
    "dvc repro": Run("tests/test_commands.py", LOOP, 'DVC, "repro"'),
    "dvc metrics diff": Run("tests/test_commands.py", LOOP, 'DVC, "metrics", "diff"'),
    "dvc params diff": Run("tests/test_commands.py", LOOP, 'DVC, "params", "diff"'),
    **{
        f"dvc exp run -S train.epochs={n}": Run(
            "tests/test_commands.py", LOOP, 'DVC, "exp", "run", "-S", f"train.epochs={epochs}"',
            EPOCHS,
        )
        for n in (2, 4, 8)
    },
    "dvc exp show": Run("tests/test_commands.py", LOOP, 'DVC, "exp", "show", "--csv"', extra="--csv"),
    "dvc plots diff": Run("tests/test_commands.py", LOOP, 'DVC, "plots", "diff"'),
    "dvc plots diff HEAD~1": Run(
        "tests/test_commands.py", LOOP, 'DVC, "plots", "diff", "HEAD~1", "-o", str(out)',
        extra="-o <out>",
    ),
    "make dvc-adopt": Run("tests/test_commands.py", "adopted", '"make", "dvc-adopt"'),
    "make snakemake-adopt": Run(
        "tests/test_commands.py", "fresh_clone_pulls_and_both_runners_have_nothing_to_do",
        '"make", "snakemake-adopt"',
    ),
    "dvc push": Run(
        "tests/test_commands.py",
        "test_default_remote_is_a_local_folder_push_then_pull_in_a_fresh_clone",
        'DVC, "push"',
    ),
    "git add dvc.lock results/metrics.json": Run(
        "tests/test_commands.py", "adopted", '"git", "add", "dvc.lock", "results/metrics.json"'
    ),
    'git commit -m "run"': Run(
        "tests/test_commands.py", "adopted", '*GIT, "commit", "-m", "run"', extra=IDENTITY
    ),
    'git commit -am "4 epochs"': Run(
        "tests/test_commands.py", LOOP, '*GIT, "commit", "-am", "2 epochs"',
        {"4 epochs": "2 epochs"}, IDENTITY,
    ),
    "dvc remote add -d s3 s3://BUCKET/maskprivacy": Run(
        "tests/test_commands.py", S3, 'DVC, "remote", "add", "-d", "s3", "s3://maskprivacy/dvc"',
        {"s3://BUCKET/maskprivacy": "s3://maskprivacy/dvc"},
    ),
    "dvc remote modify s3 endpointurl https://...": Run(
        "tests/test_commands.py", S3, 'DVC, "remote", "modify", "s3", "endpointurl", url',
        {"https://...": "<url>"},
    ),
    "python -m maskprivacy.analysis.paper_protocol table "
    '"paper protocol, duplicates dropped=results/compare/statistics.json" '
    '"paper protocol, duplicates kept=../maskprivacy-keepdups/results/compare/statistics.json"': Run(
        "tests/test_paper_protocol.py", "test_readme_table_marks_missing_runs_pending",
        'sys.executable, "-m", "maskprivacy.analysis.paper_protocol", "table", '
        'f"paper protocol, dedup={done}", f"paper protocol, keep dups={tmp_path / \'none.json\'}"',
        {
            "paper protocol, duplicates dropped=results/compare/statistics.json":
                "paper protocol, dedup=<done>",
            "paper protocol, duplicates kept=../maskprivacy-keepdups/results/compare/"
            "statistics.json": "paper protocol, keep dups=<tmp_path>/none.json",
        },
    ),
    "python benchmarks/cpu_attacker.py --workdir . --budget-min 8 --configs resnet18:64:bf16 "
    "resnet18:80:bf16 resnet34:64:bf16 resnet18:64:fp32": Run(
        "tests/test_benchmarks.py", "test_cpu_attacker_sweeps_speed_and_accuracy",
        '"--workdir", str(tmp_path), "--budget-min", "0.02", "--configs", "resnet18:32:bf16", '
        '"resnet18:32:fp32", "--batch-size", "8", "--steps", "1"',
        {".": "<tmp_path>", "8": "0.02", "resnet18:64:bf16": "resnet18:32:bf16",
         "resnet18:80:bf16": "", "resnet34:64:bf16": "", "resnet18:64:fp32": "resnet18:32:fp32"},
        "--batch-size 8 --steps 1", "python benchmarks/cpu_attacker.py",
    ),
    f"{PUBLISHED} add cpu-study --command "
    '"snakemake --cores all --configfile presets/cpu.yaml" --machine "2-core AMD EPYC" '
    "--wall-min 60": Run(
        "tests/test_published.py", "test_add_keeps_metrics_statistics_and_provenance",
        '"add", "cpu-study", "--workdir", run, "--command", cmd, "--machine", "2 cores", '
        '"--wall-min", "57.5"',
        {"2-core AMD EPYC": "2 cores", "60": "57.5"}, "--workdir <run>", PUBLISHED,
    ),
    f"{PUBLISHED} render": Run(
        "tests/test_published.py", "test_render_fills_every_block_from_the_published_figures",
        '"render"', inprocess=PUBLISHED,
    ),
    # make wheelhouse's recipe (MAKE_RECIPES)
    "python -m maskprivacy_workflow.wheelhouse .gpu/wheels": Run(
        "tests/test_wheelhouse.py", WHEELS, 'str(wheels), "--root", str(ROOT)',
        {".gpu/wheels": "<wheels>"}, "--root <ROOT>", "python -m maskprivacy_workflow.wheelhouse",
    ),
    "smk/bin/pip install --no-index --find-links wheels --no-deps -r wheels/requirements.txt": Run(
        "tests/test_wheelhouse.py", WHEELS,
        'str(venv / "bin/pip"), "install", "-q", "--no-index", "--find-links", str(wheels), '
        '"--no-deps", "-r", str(wheels / "requirements.txt")',
        {"smk/bin/pip": "<venv>/bin/pip", "wheels": "<wheels>",
         "wheels/requirements.txt": "<wheels>/requirements.txt"},
        "-q",
    ),
}  # fmt: skip

# a make target a page shows -> its recipe as `make -n` prints it (.venv/bin/ left out), which
# RUN_BY_TEST lists
MAKE_RECIPES = {"make wheelhouse": "python -m maskprivacy_workflow.wheelhouse .gpu/wheels"}

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
    "snakemake --cores all --configfile presets/cpu.yaml presets/recognizer.yaml presets/ladder.yaml",
    "snakemake --cores all --configfile presets/utkface.yaml presets/ladder_gpu.yaml",
]

# what the suite cannot run as written, and why (each has a test of what can be tested here)
NOT_HERE = {
    "make demo": "the whole install (about 7 GB, PyPI); its pipeline is `snakemake --cores all`, "
    "run by tests/usercopy.py, and its venv is what the suite runs in",
    "make test": "the suite itself; test_make_test_lints_then_runs_the_suite reads its recipe",
    "make lint": "run by `make test` before the suite (what CI runs, .ci/run); "
    "test_make_test_lints_then_runs_the_suite reads its recipe",
    "make repro": "`dvc repro` after `make setup`: dvc repro is run by tests/test_commands.py",
    "snakemake --cores all --use-conda": "no conda on the test machines; tests/test_envs.py checks "
    "each rule's env against the imports of its code and tests/test_workflow_files.py its pins",
    "python -m venv --system-site-packages smk": "an offline GPU node's venv; tests/test_wheelhouse.py "
    "builds one offline from the wheelhouse and runs snakemake --version",
    "tar xzf ../shared/data/halfface.tar.gz -C data/": "the shared halfFace set is not on every "
    "machine (tests pass without ../shared); tests/test_real_masks.py makes a set with real masks",
    "snakemake --cores all --configfile presets/cpu.yaml presets/recognizer.yaml "
    "presets/halfface.yaml": "needs halfFace's labels in data/halfface to plan its worn version; "
    "tests/test_real_masks.py adds a set with real masks to a finished run and runs only its jobs",
    "smk/bin/snakemake --cores all --scheduler greedy --configfile presets/utkface.yaml": "real "
    "UTKFace on an offline GPU node (benchmarks/gpu_session.sh); the preset is planned here "
    "(DRY_RUN) and the wheelhouse tested by tests/test_wheelhouse.py",
}


def commands(text: str) -> list[str]:
    """The commands of a page's ```bash blocks: one per line (a line continued with a backslash
    joined; each side of a ``&&`` apart), comments and blank lines left out, spaces collapsed."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                line = re.split(r"\s+#\s", line, maxsplit=1)[0]
                found += [re.sub(r"\s+", " ", part).strip() for part in line.split(" && ")]
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
    listed = {*RUN_BY_TEST, *DRY_RUN, *NOT_HERE, *MAKE_RECIPES}
    unlisted = {c: p for c, p in where.items() if c not in listed}
    assert not unlisted, f"commands shown but run by no test (list them here): {unlisted}"
    stale = sorted(listed - set(where) - set(MAKE_RECIPES.values()))
    assert not stale, f"listed here but shown on no page: {stale}"


class Unknown(str):
    """A value the test has only when it runs (a fixture's, a temp path): ``<name>``."""

    def __truediv__(self, other) -> Unknown:
        return Unknown(f"{self}/{other}")


class Names(dict):
    """What a name in a test's code stands for: the function's string constants, then the
    module's names, then Python's, else :class:`Unknown`."""

    def __init__(self, module, constants: dict[str, str]):
        super().__init__(constants)
        self.module = module

    def __missing__(self, name: str):
        for space in (self.module, builtins):
            if hasattr(space, name):
                return getattr(space, name)
        return Unknown(f"<{name}>")


def word(value) -> str:
    """A word of a command as a page would write it: a program in the venv by its name."""
    text = str(value)
    if text.startswith(f"{BIN}/"):
        return text[len(str(BIN)) + 1 :]
    return "<ROOT>" if text == str(ROOT) else text


def words_run(run: Run) -> list[str]:
    """The words that ``run.function`` passes as the last arguments of one call or list, equal
    to ``run.code``, evaluated; fails when it passes no such words."""
    tree = ast.parse((ROOT / run.file).read_text())
    funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == run.function]
    assert funcs, f"{run.file} has no function {run.function}"
    want = [ast.unparse(e) for e in ast.parse(f"[{run.code}]", mode="eval").body.elts]
    found = False
    for node in ast.walk(funcs[0]):
        items = node.args if isinstance(node, ast.Call) else getattr(node, "elts", None)
        if isinstance(node, ast.Call | ast.List | ast.Tuple) and len(items) >= len(want):
            found = found or [ast.unparse(e) for e in items[len(items) - len(want) :]] == want
    assert found, f"{run.file}: {run.function} passes no call the words {run.code}"
    constants = {
        n.targets[0].id: n.value.value
        for n in ast.walk(funcs[0])
        if isinstance(n, ast.Assign)
        and len(n.targets) == 1
        and isinstance(n.targets[0], ast.Name)
        and isinstance(n.value, ast.Constant)
        and isinstance(n.value.value, str)
    }
    module = importlib.import_module(run.file.removeprefix("tests/").removesuffix(".py"))
    return [word(w) for w in eval(f"[{run.code}]", {}, Names(module, constants))]


def without(words: list[str], extra: list[str]) -> list[str]:
    """``words`` less the run of words ``extra`` (fails when they do not hold it)."""
    for i in range(len(words) - len(extra) + 1):
        if words[i : i + len(extra)] == extra:
            return words[:i] + words[i + len(extra) :]
    raise AssertionError(f"the test's words {words} do not hold {extra}")


@pytest.mark.parametrize("cmd", list(RUN_BY_TEST))
def test_the_tests_named_run_those_commands(cmd):
    run = RUN_BY_TEST[cmd]
    page = shlex.split(cmd)
    program = shlex.split(run.inprocess)
    assert page[: len(program)] == program, (cmd, run.inprocess)
    swap = run.swap or {}
    want = [swap.get(w, w) for w in page[len(program) :] if swap.get(w, w) != ""]
    got = without(words_run(run), shlex.split(run.extra))
    assert got == want, f"{run.file}: {run.function} runs {got}, the page shows {want}"


def make_n(*targets: str) -> list[str]:
    """The commands ``make`` would run for ``targets`` in this checkout (the venv taken as
    made), ``.venv/bin/`` left out."""
    # --no-print-directory: under `make test` (CI), a nested make would print "make[1]: ..."
    res = subprocess.run(
        ["make", "-n", "--no-print-directory", "-o", ".venv/.installed", *targets],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [line.replace(".venv/bin/", "") for line in res.stdout.splitlines()]


def test_make_targets_run_the_recipes_listed():
    for cmd, recipe in MAKE_RECIPES.items():
        assert make_n(cmd.split()[1]) == [recipe], cmd
        assert recipe in RUN_BY_TEST


def test_make_test_lints_then_runs_the_suite():
    """`make test` (what CI runs) is `make lint`, then the suite; `make lint` is what the
    README says: ruff, snakefmt, snakemake --lint, the dvc.yaml and docs/parameters.md checks."""
    lint = make_n("lint")
    assert lint == [
        "ruff check src tests workflow/scripts benchmarks",
        "ruff format --check src tests workflow/scripts benchmarks",
        "snakefmt --check Snakefile workflow/rules",
        "snakemake --lint",
        "python -m maskprivacy_workflow.dvcgen --check",  # dvc.yaml
        "python -m maskprivacy_workflow.paramdocs --check",  # docs/parameters.md
    ]
    assert make_n("test") == [*lint, "python -m pytest -q -ra"]


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
    links = 0
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).resolve().is_file(), f"{page.name}: {target}"
            links += 1
    assert links >= len(PAGES)  # the pattern finds links: every page links back or onwards


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
