"""Published runs: a finished run's metrics kept under results/reference/<run>/, and the tables of
README.md and docs/*.md made from them by `python -m maskprivacy_workflow.published`."""

from __future__ import annotations

import json

import pytest
from test_evaluate import N, fake, statistics_for, two_conditions  # noqa: F401 (fake: a fixture)

from maskprivacy.analysis import answer, compare
from maskprivacy_workflow import published

BLOCK = "<!-- BEGIN published: {0} -->\nold text\n<!-- END published: {0} -->\n"


@pytest.fixture
def finished_run(tmp_path, fake):  # noqa: F811
    """A run folder as Snakemake leaves it: results/metrics.json and compare's statistics."""
    test, split, preds = fake
    st = statistics_for(test, split, two_conditions(preds, seeds=(0, 1, 2)))
    run = tmp_path / "run"
    (run / "results/compare").mkdir(parents=True)
    (run / "results/compare/statistics.json").write_text(json.dumps(st))
    (run / "results/metrics.json").write_text(json.dumps(compare.metrics_summary(st)))
    return run, st


def repo_with_pages(tmp_path, *names):
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (root / "README.md").write_text("# project\n\n" + "".join(BLOCK.format(n) for n in names))
    (root / "docs/results.md").write_text("# results\n\n" + BLOCK.format(names[0]) + "after\n")
    return root


def main(*argv):
    return published.main([str(a) for a in argv])


def test_add_keeps_metrics_statistics_and_provenance(tmp_path, finished_run):
    run, st = finished_run
    root = repo_with_pages(tmp_path, "cpu-study")
    cmd = "snakemake --cores all --configfile presets/cpu.yaml"
    assert main("--root", root, "add", "cpu-study", "--workdir", run, "--command", cmd,
                "--machine", "2 cores", "--wall-min", "57.5") == 0  # fmt: skip
    out = root / "results/reference/cpu-study"
    assert (out / "metrics.json").read_bytes() == (run / "results/metrics.json").read_bytes()
    kept = json.loads((out / "statistics.json").read_text())
    assert kept["conditions"].keys() == st["conditions"].keys() and "accounting" in kept
    info = json.loads((out / "run.json").read_text())
    assert info["command"] == cmd and info["machine"] == "2 cores" and info["wall_min"] == 57.5
    # the answer sentence, as compare words it, from this run's statistics: its test faces and
    # the masked condition's seed-mean sex accuracy
    assert info["answer"] == answer.sentence(st)
    sex = st["conditions"]["masked"]["seed_mean"]["sex"]["estimate"]
    assert info["answer"].startswith(f"On the same {N:,} test faces, masked against unmasked")
    assert f"sex is still read from {100 * sex:.1f}% of masked faces" in info["answer"]


def test_render_fills_every_block_from_the_published_figures(tmp_path, finished_run, capsys):
    run, st = finished_run
    root = repo_with_pages(tmp_path, "cpu-study", "paper-cpu", "cpu-study.short", "cpu-study.paper")
    args = ["--root", root, "add", "cpu-study", "--workdir", run, "--command", "snakemake"]
    main(*args, "--machine", "m")
    assert main("--root", root, "render", "--check") == 1  # stale before rendering
    assert "stale published blocks" in capsys.readouterr().err
    assert main("--root", root, "render") == 0
    readme = (root / "README.md").read_text()
    assert "old text" not in readme and readme.count("<!-- END published:") == 4
    # the front page's two sentences: the verdict word from compare's answer, and the figures
    verdict = st["answer"]["attributes"]
    word = "No" if all(verdict[a]["far_above_chance"] for a in verdict) else "Not entirely"
    assert f"**{word}.** On {N:,} real test faces" in readme
    # the figures are the run's own: the masked condition's seed-mean sex accuracy
    sex = st["conditions"]["masked"]["seed_mean"]["sex"]["estimate"]
    assert f"{100 * sex:.1f}%" in readme
    assert "p_Holm" in readme and "Chance (no face looked at)" in readme
    assert "mean of 3 seeds" in readme
    # the paper's figures beside the run's, with the run's paired tests
    assert "Seneviratne et al. 2021" in readme and "| 94.65 | 83.12 | 6.21 | 8.33 |" in readme
    assert "| cpu-study (" in readme and "masked_vs_unmasked" in readme
    # a run not yet published says so instead of inventing numbers
    assert "no published run `paper-cpu` yet" in readme
    assert (root / "docs/results.md").read_text().endswith("after\n")
    assert main("--root", root, "render", "--check") == 0


def test_hand_edited_table_is_caught(tmp_path, finished_run):
    run, _ = finished_run
    root = repo_with_pages(tmp_path, "cpu-study")
    main("--root", root, "add", "cpu-study", "--workdir", run, "--command", "c", "--machine", "m")
    main("--root", root, "render")
    page = root / "docs/results.md"
    page.write_text(page.read_text().replace("p_Holm", "p"))
    assert main("--root", root, "render", "--check") == 1


def test_demo_and_unfinished_runs_are_refused(tmp_path, finished_run):
    run, st = finished_run
    root = repo_with_pages(tmp_path, "x")
    (run / "results/metrics.json").unlink()
    with pytest.raises(SystemExit, match="missing"):
        main("--root", root, "add", "x", "--workdir", run, "--command", "c", "--machine", "m")
    (run / "results/metrics.json").write_text("{}")
    (run / "results/compare/statistics.json").write_text(json.dumps({**st, "data_source": "demo"}))
    with pytest.raises(SystemExit, match="demo"):
        main("--root", root, "add", "x", "--workdir", run, "--command", "c", "--machine", "m")
    with pytest.raises(SystemExit, match="name"):
        main("--root", root, "add", "../x", "--workdir", run, "--command", "c", "--machine", "m")


def test_the_repository_pages_are_rendered_from_the_published_runs():
    """README.md and docs/*.md hold the tables the published metrics give (drift check)."""
    from conftest import ROOT

    assert published.render(ROOT, check=True) == []


def test_dvc_yaml_lists_every_published_metrics_file():
    import yaml
    from conftest import ROOT

    found = sorted(
        p.relative_to(ROOT).as_posix() for p in ROOT.glob("results/reference/*/metrics.json")
    )
    listed = yaml.safe_load((ROOT / "dvc.yaml").read_text()).get("metrics", [])
    assert listed == found


def publish(root, run, name, st=None, machine="m"):
    """Publish the run folder ``run`` as ``name`` (after writing ``st`` as its statistics)."""
    if st is not None:
        (run / "results/compare/statistics.json").write_text(json.dumps(st))
        (run / "results/metrics.json").write_text(json.dumps(compare.metrics_summary(st)))
    args = ["--root", root, "add", name, "--workdir", run, "--command", "snakemake"]
    assert main(*args, "--machine", machine) == 0


@pytest.fixture
def study_statistics(fake):  # noqa: F811
    """compare's statistics of a small mask study: unmasked, surgical and cloth, 3 x 3, seed 0;
    a cloth mask hides age from the chance of a median guess, the rest stays readable."""
    from maskprivacy.analysis import matrix
    from maskprivacy.masks import sets

    test, split, preds = fake
    study_sets = {"surgical": {"surgical": 1.0}, "cloth": {"cloth": 1.0}}
    conds = sets.study_conditions(study_sets)
    quality = {"unmasked": (0.05, 4), "surgical": (0.15, 8), "cloth": (0.30, 40)}
    by = {c["name"]: {0: preds(*quality[c["test"]], k)} for k, c in enumerate(conds)}
    st = statistics_for(test, split, by)
    mat = matrix.study_matrix(st, conds, sets.data_sets(study_sets))
    st["study"] = {"matrix": mat, "sentences": matrix.sentences(mat, list(study_sets))}
    return st


def test_mask_study_renders_as_matrices_and_per_set_verdicts(tmp_path, study_statistics):
    """A mask study's page shows per attribute the train x test matrix of seed means and, per
    mask set, its own model minus the baseline with the Holm p, not 49 rows per table; its
    front-page block says which set protects what."""
    st = study_statistics
    run = tmp_path / "run"
    (run / "results/compare").mkdir(parents=True)
    root = repo_with_pages(tmp_path, "mask-study", "mask-study.short")
    publish(root, run, "mask-study", st)
    assert main("--root", root, "render") == 0
    page = (root / "README.md").read_text()
    # each set's sentence, not the first comparison's answer (the unmasked model on a mask)
    assert all(f"- {t}" in page for t in st["study"]["sentences"].values())
    cells = st["study"]["matrix"]["cells"]
    status = {s: cells[s][s]["difference"]["age"]["status"] for s in ("surgical", "cloth")}
    assert status == {"surgical": "significant_but_readable", "cloth": "protects"}
    assert "**cloth protects age; no other set protects an attribute** from a network" in page
    assert "| trained on | unmasked | surgical | cloth |" in page
    cell = st["study"]["matrix"]["cells"]["cloth"]["cloth"]
    sex = cell["metrics"]["sex"]["estimate"]
    assert f"**{100 * sex:.1f}**" in page  # the diagonal: trained and tested on cloth
    diff = cell["difference"]["race"]["difference"]
    assert "| cloth | " in page and f"{100 * diff:+.1f} pt, p_Holm" in page
    assert "cloth_to_surgical" not in page  # the 9 conditions are not listed row by row


def test_two_splits_side_by_side_on_their_shared_seeds(tmp_path, fake):  # noqa: F811
    """`A.vs.B` sets two published runs side by side (e.g. identity-disjoint against
    duplicate-grouped split) on the seeds both trained, each with its own test faces."""
    test, split, preds = fake
    run = tmp_path / "run"
    (run / "results/compare").mkdir(parents=True)
    root = repo_with_pages(tmp_path, "identity-split.vs.cpu-study")
    assert main("--root", root, "render") == 0
    assert "no published run `identity-split`, `cpu-study` yet" in (root / "README.md").read_text()
    three = statistics_for(test, split, two_conditions(preds, seeds=(0, 1, 2)))
    publish(root, run, "cpu-study", three)
    one = statistics_for(
        test, split, two_conditions(lambda e, a, s: preds(2 * e, a, s), seeds=(0,))
    )
    one["split_counts"] = {"train": 900, "test": 400}
    publish(root, run, "identity-split", one)
    assert main("--root", root, "render") == 0
    page = (root / "README.md").read_text()
    rows = [line for line in page.splitlines() if line.startswith("| masked |")]
    assert [r.split(" | ")[1] for r in rows] == ["identity-split", "cpu-study"]
    assert "(seed 0)" in page and "| 900 / 400 |" in page
    # seed 0 only, from each run's own per-seed figures
    for st, row in zip((one, three), rows, strict=True):
        acc = st["conditions"]["masked"]["per_seed"]["0"]["sex"]["accuracy"]
        assert f"| {100 * acc:.1f} [" in row
