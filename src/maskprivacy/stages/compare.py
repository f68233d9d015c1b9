"""compare: every condition against the baseline on the same test images and seeds; metrics, report.

Reads the evaluate jobs' predictions and metrics (condition-major, seed-minor, as the rule lists
them), the train jobs' histories and reports (training set-major, seed-minor), every stage's
rejects and the mask tables (per mask set); the statistics come from
:mod:`maskprivacy.analysis.compare`, the figures from :mod:`maskprivacy.report.plots` and the HTML
report from :mod:`maskprivacy.report.html` (with :mod:`maskprivacy.report.study` for the mask
study). With ``recognize.enabled``, the recognizer attacker's predictions (the ``recognize``
job's, in evaluate's format) get the same statistics under ``statistics["recognizer"]`` and
``metrics["recognizer"]``, with a Holm family of their own, and a section of the report
(docs/recognizer.md); with external test sets, the recognizer's results on them too
(``statistics["recognizer"]["external"]``, beside the CNN's in the report's external table). No torch here: compare runs in a light environment.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from maskprivacy.analysis import compare, external, matrix, paper_protocol
from maskprivacy.analysis.conditions import group_differences, group_table, test_part
from maskprivacy.core.io import read_table, write_json, write_table, write_text
from maskprivacy.core.plumbing import atomic_dir
from maskprivacy.faces.landmarks import landmarks_array
from maskprivacy.masks.sets import by_set, data_sets, used_sets
from maskprivacy.report import html as html_report
from maskprivacy.report import plots, provenance, study
from maskprivacy.report import real_masks as real_masks_report
from maskprivacy.report.sheets import rejects_sheet
from maskprivacy.stages.entry import Files, StageConfig


def by_condition_and_seed(
    files: Sequence[str], names: list[str], seeds: list[int]
) -> dict[str, dict[int, str]]:
    """The rule's expand() lists, condition-major and seed-minor, as {condition: {seed: file}}."""
    if len(files) != len(names) * len(seeds):
        raise ValueError(
            f"compare: {len(files)} files for {len(names)} conditions x {len(seeds)} seeds "
            f"{seeds}: the jobs were made for other train.seeds"
        )
    it = iter(files)
    return {n: {s: next(it) for s in seeds} for n in names}


def by_model(files: Sequence[str], datasets: list[str], seeds: list[int]) -> dict[str, str]:
    """The rule's per-model lists (training set-major, seed-minor) as {"masked seed 0": file}."""
    models = [f"{d} seed {s}" for d in datasets for s in seeds]
    return dict(zip(models, files, strict=True))


def read_attacker(
    prediction_files: Sequence[str],
    metric_files: Sequence[str],
    names: list[str],
    seeds: list[int],
    test: pd.DataFrame,
    attacker: str,
) -> tuple[dict[str, dict[int, pd.DataFrame]], dict[str, dict[int, dict[str, Any]]]]:
    """One attacker's per-image predictions and per-seed metrics ({condition: {seed: ...}}),
    from the rule's lists (evaluate's for the CNN, recognize's for the recognizer); the
    predictions must be on the split's test images, in its order."""
    preds = {
        n: {s: read_table(f) for s, f in by_seed.items()}
        for n, by_seed in by_condition_and_seed(prediction_files, names, seeds).items()
    }
    for name, by_seed in preds.items():
        for s, df in by_seed.items():
            if df["file"].tolist() != test["file"].tolist():
                raise ValueError(
                    f"compare: {attacker}predictions of {name!r} (seed {s}) are not on the "
                    "split's test images"
                )
    per_seed = {  # the jobs' metrics, less what names the job
        n: {
            s: {
                k: v
                for k, v in json.loads(Path(f).read_text()).items()
                if k not in ("condition", "data_source", "seed")
            }
            for s, f in by_seed.items()
        }
        for n, by_seed in by_condition_and_seed(metric_files, names, seeds).items()
    }
    return preds, per_seed


def recognizer_statistics(
    inputs: Files,
    test: pd.DataFrame,
    split: pd.DataFrame,
    names: list[str],
    seeds: list[int],
    cfg: dict[str, Any],
    conditions: list[dict[str, str]],
    masks: dict[str, pd.DataFrame],
) -> dict[str, Any]:
    """The recognizer attacker's statistics (recognize.enabled): the CNN's, computed the same
    way from the recognize job's predictions, with a Holm family of its own (each attacker
    answers its own question; the CNN's p-values stay what they were without it)."""
    preds, per_seed = read_attacker(
        inputs.recognizer_predictions, inputs.recognizer_metrics, names, seeds, test, "recognizer "
    )
    core, ens = compare.compare_conditions(test, split, preds, per_seed, cfg["baseline"], cfg)
    out = {
        "attacker": "dlib face recognizer descriptors + scikit-learn heads",
        **core,
        "holm_scope": "the recognizer (its own family, apart from the CNN's)",
        "by_mask_type": compare.by_mask_type(test, ens, conditions, masks),
        "no_descriptor": no_descriptor(read_table(inputs.recognizer_rejects)),
    }
    if "recognizer_external_predictions" in inputs:  # evaluate.external: the same heads on them
        out["external"] = recognizer_external(inputs, cfg)
    return out


def no_descriptor(rejects: pd.DataFrame) -> dict[str, Any]:
    """The recognizer's faces without a descriptor (its rejects): how many, by detail."""
    return {
        "n": int(len(rejects)),
        "by_detail": rejects["detail"].value_counts().to_dict() if len(rejects) else {},
    }


def recognizer_external(inputs: Files, cfg: dict[str, Any]) -> dict[str, Any]:
    """The recognizer on the external test sets (the recognize_external jobs' predictions): per
    set, the CNN's statistics (:func:`maskprivacy.analysis.external.summarise`) and the faces
    without a descriptor (predicted from the training prior)."""
    out = external.from_inputs(
        inputs,
        cfg["bootstrap"],
        cfg["seed"],
        "recognizer_external_predictions",
        real_mask_tests(cfg),
    )
    for path in inputs.recognizer_external_rejects:  # results/recognize_external/<set>/rejects.csv
        out[Path(path).parts[-2]]["no_descriptor"] = no_descriptor(read_table(path))
    return out


def real_mask_tests(cfg: dict[str, Any]) -> dict[str, Any]:
    """compare's settings of the real-mask comparisons' tests (external sets with real masks)."""
    return {k: cfg[k] for k in ("alpha", "permutations") if k in cfg}


def run(config: StageConfig, inputs: Files, outputs: Files, log: logging.Logger) -> dict[str, Any]:
    """Compare every condition with ``compare.baseline``; write statistics, metrics, tables,
    plots and the HTML report. With more than one mask set, the mask study too
    (:func:`maskprivacy.report.study.build`, from the test faces' landmarks, ``inputs.landmarks``):
    ``statistics["study"]``, ``metrics["study"]`` and the report's "Which masks protect?"."""
    cfg = config.params
    conditions = list(config.extra["conditions"])
    names = [c["name"] for c in conditions]
    seeds = [int(s) for s in config.extra["seeds"]]
    datasets = sorted({c["train"] for c in conditions})
    download = json.loads(Path(inputs.download_report).read_text())
    data_source = download["source"]
    demo = data_source == "demo"
    split = read_table(inputs.split)
    test = test_part(inputs.split)
    preds, per_seed = read_attacker(inputs.predictions, inputs.metrics, names, seeds, test, "")
    base = cfg["baseline"]
    core, ens = compare.compare_conditions(test, split, preds, per_seed, base, cfg)
    rejects = pd.concat([read_table(t) for t in inputs.rejects], ignore_index=True)
    masks = {  # per mask set, one table per shard
        name: pd.concat([read_table(t) for t in tables], ignore_index=True)
        for name, tables in by_set(inputs.masks).items()
    }
    groups = group_table(test, ens)
    statistics = {
        "data_source": data_source,
        "demo": demo,
        **core,
        "condition_definitions": conditions,
        "by_mask_type": compare.by_mask_type(test, ens, conditions, masks),
        "accounting": compare.accounting(download["n_inputs"], split, rejects),
        "split_counts": split["split"].value_counts().to_dict(),
        "model_selection": paper_protocol.load_model_selection(
            by_model(inputs.train_reports, datasets, seeds)
        ),
    }
    if "external_reports" in inputs:  # evaluate.external: the external test sets
        statistics["external"] = external.from_inputs(
            inputs, cfg["bootstrap"], cfg["seed"], tests=real_mask_tests(cfg)
        )
    if "recognizer_predictions" in inputs:  # recognize.enabled: the second attacker
        statistics["recognizer"] = recognizer_statistics(
            inputs, test, split, names, seeds, cfg, conditions, masks
        )
    metrics = compare.metrics_summary(statistics)
    if "recognizer" in statistics:
        metrics["recognizer"] = compare.metrics_summary(
            {"data_source": data_source, **statistics["recognizer"]}
        )
    if "external" in statistics:
        metrics["external"] = external.metrics_summary(statistics["external"])
    if "external" in statistics.get("recognizer", {}):
        metrics["recognizer"]["external"] = external.metrics_summary(
            statistics["recognizer"]["external"]
        )
    if real_masks_report.sets_with_real_masks(statistics):  # external sets with real masks
        metrics["real_masks"] = real_masks_report.metrics_summary(statistics)
    histories = by_model(inputs.histories, datasets, seeds)
    sets = used_sets(config.extra["all"]["mask"]["sets"], conditions)
    section = ""
    with atomic_dir(outputs.plots) as tmp:
        if len(sets) > 1:  # the mask study: the matrix, its heat maps, what each mask covers
            marks = pd.concat([read_table(t) for t in inputs.landmarks], ignore_index=True)
            marks = marks[marks["file"].isin(test["file"])].sort_values("file", kind="stable")
            size = (int(config.extra["all"]["align"]["size"]),) * 2
            statistics["study"], section = study.build(
                statistics, conditions, sets, landmarks_array(marks), size, tmp, demo
            )
            metrics["study"] = matrix.matrix_metrics(statistics["study"]["matrix"])
            if "recognizer" in statistics:
                rec = statistics["recognizer"]
                rec["study"] = {"matrix": matrix.study_matrix(rec, conditions, data_sets(sets))}
                metrics["recognizer"]["study"] = matrix.matrix_metrics(rec["study"]["matrix"])
        plots.learning_curves_png(
            {d: read_table(h) for d, h in histories.items()},
            tmp / "learning_curves.png",
            demo=demo,
            chance=statistics["chance"],
        )
        # both attackers: what each reads under every condition, and every change (the forest)
        by_attacker = html_report.attackers(statistics)
        plots.levels_png(
            plots.condition_rows(by_attacker, conditions),
            tmp / "comparison.png",
            statistics["chance"],
            demo=demo,
        )
        plots.forest_png(by_attacker, tmp / "forest.png", conditions, demo=demo)
        for name in real_masks_report.sets_with_real_masks(statistics):
            path = real_masks_report.figure_path(tmp, name)
            path.parent.mkdir(exist_ok=True)
            real_masks_report.figure_png(name, statistics, path)
            # the set's photos align or mask could not use, each as it came in, with its reason
            rejects_sheet(
                external.set_rejects(inputs.external_rejects, name),
                next(f for f in inputs.external_images if Path(f).parts[2] == name),
                real_masks_report.rejects_path(tmp, name),
                demo=demo,
            )
        if inputs.sheet:  # the masks, for Snakemake's report (the first mask set's first shard)
            shutil.copyfile(inputs.sheet[0], tmp / "masks.png")
        for name in preds:
            if name != base:
                plots.group_heatmap_png(
                    group_differences(groups, name, base),
                    f"{name} minus {base}, per race x age group (seed ensemble)",
                    tmp / f"groups_{name}_vs_{base}.png",
                    demo=demo,
                )
    # the landing text of Snakemake's report (workflow/report/workflow.rst): the answer table and
    # the real masks' sentences; apart from the plots, which DVC shows as images only
    with atomic_dir(outputs.fragments) as tmp:
        write_text(tmp / "verdict.html", html_report.verdict_fragment(statistics))
        if "real_masks" in metrics:
            write_text(tmp / "real_masks.html", real_masks_report.landing(statistics))
    write_table(outputs.groups, groups)
    write_table(outputs.rejects, rejects.sort_values(["stage", "file"], kind="stable"))
    write_json(outputs.statistics, statistics)
    # the per-condition plots of the first seed (every seed's are under results/evaluate/)
    condition_plots = by_condition_and_seed(inputs.plots, names, seeds)
    first = statistics["seeds"][0]
    plot_dirs = [Path(outputs.plots), *[Path(condition_plots[n][first]) for n in names]]
    verified = download.get("verification", {}).get("status")
    run = {  # how this run was made, for the report's first line and its "This run" section
        **provenance.collect(),
        "data": f"{data_source} ({download['variant']}), {len(split):,} faces in the split"
        + (f"; UTKFace files {verified}" if verified else ""),
        "utkface": verified == "verified",
    }
    write_text(
        outputs.report,
        html_report.render(
            statistics,
            config.extra["all"],
            plot_dirs,
            inputs.sheet,  # the first mask set's, shard 0
            json.loads(Path(inputs.data_report).read_text()),
            inputs.get("identities"),  # split.group_by: identity: the identities' contact sheet
            section,
            inputs.get("data_rejects"),
            run,
        ),
    )
    write_text(outputs.answer, html_report.answer_page(statistics))  # Snakemake's report shows it
    write_json(outputs.metrics, metrics)
    return metrics
