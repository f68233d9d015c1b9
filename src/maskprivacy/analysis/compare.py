"""The ``compare`` stage: every condition against the baseline, on the same test images.

Each condition is evaluated once per training seed (``train.seeds``). This stage pairs the
per-image predictions of the ``evaluate`` jobs (condition B against the baseline A, seed ``s``
with seed ``s``) and reports, per attribute:

- the metrics of every seed's model, their mean and standard deviation over seeds, and the
  seed ensemble (the mean of the models' outputs: the strongest attacker we have);
- the difference B - A averaged over seeds, with a bootstrap 95% interval over test images and a
  paired sign-flip permutation test over images, beside a paired t-test and t-interval over seeds
  (:mod:`maskprivacy.analysis.stats`); Holm-Bonferroni over every test of the report;
- chance: always guessing the training part's majority class (sex, race) or median age.

Also a per-group table (sex x race x age bucket) and heat maps and a breakdown by mask type (both
of the ensemble's predictions), the input accounting (inputs = images in the split + rejects of
every stage), ``results/metrics.json`` flat for ``dvc metrics diff``, and one self-contained
HTML report that states the answer first (:mod:`maskprivacy.analysis.answer`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from maskprivacy.analysis import answer, stats
from maskprivacy.analysis.conditions import condition_metrics, ensemble_predictions, headline
from maskprivacy.analysis.metrics import accuracy, mae
from maskprivacy.core.io import n_rejected
from maskprivacy.core.labels import RACES, SEXES

ATTRS = ("sex", "race", "age")
METRIC = {"sex": "accuracy", "race": "accuracy", "age": "mae"}


def accounting(n_inputs: int, split: pd.DataFrame, rejects: pd.DataFrame) -> dict[str, Any]:
    """Inputs against outputs plus rejects; raises when they do not balance."""
    acc = {
        "inputs": int(n_inputs),
        "in_split": int(len(split)),
        "rejected": n_rejected(rejects),
        "rejected_by_stage_and_reason": {
            f"{s}/{r}": int(n) for (s, r), n in rejects.groupby(["stage", "reason"]).size().items()
        },
    }
    acc["balanced"] = acc["inputs"] == acc["in_split"] + acc["rejected"]
    if not acc["balanced"]:
        raise RuntimeError(f"compare: inputs are not all accounted for: {acc}")
    return acc


def by_mask_type(
    test: pd.DataFrame,
    preds: dict[str, pd.DataFrame],
    conditions: list[dict],
    masks: dict[str, pd.DataFrame],
) -> dict:
    """Metrics per mask type for every condition tested on masked faces; ``masks`` holds the
    masks table of each mask set."""
    out: dict[str, Any] = {}
    for cond in conditions:
        if cond["test"] not in masks or masks[cond["test"]].empty:
            continue
        types = masks[cond["test"]].set_index("file")["mask_type"]
        df = preds[cond["name"]].assign(mask_type=test["file"].map(types).to_numpy())
        t = test.assign(mask_type=df["mask_type"].to_numpy())
        rows = {}
        for mtype, idx in t.groupby("mask_type").groups.items():
            tt, pp = t.loc[idx], df.loc[idx]
            rows[str(mtype)] = {
                "n": int(len(idx)),
                "sex_accuracy": accuracy(tt["sex"].to_numpy(), pp["sex_pred"].to_numpy()),
                "race_accuracy": accuracy(tt["race"].to_numpy(), pp["race_pred"].to_numpy()),
                "age_mae": mae(tt["age"].to_numpy(), pp["age_pred"].to_numpy()),
            }
        out[cond["name"]] = rows
    return out


def chance_levels(split: pd.DataFrame) -> dict[str, Any]:
    """What an attacker gets without looking at the face: always the training part's majority
    class (sex, race; ties to the lower index), scored on the test part, or always its median
    age (the constant with the least absolute error on the training part)."""
    train = split[split["split"] == "train"]
    test = split[split["split"] == "test"]
    if train.empty or test.empty:
        raise ValueError("compare: the split needs a train and a test part for chance levels")
    out: dict[str, Any] = {}
    for attr, names in (("sex", SEXES), ("race", RACES)):
        counts = train[attr].value_counts()
        k = int(min(counts.index[counts == counts.max()]))
        out[attr] = {
            "guess": names[k],
            "rule": "always the training majority class",
            "accuracy": accuracy(test[attr].to_numpy(), k),
        }
    median = float(np.median(train["age"].to_numpy(float)))
    out["age"] = {
        "guess": median,
        "rule": "always the training median age",
        "mae": mae(test["age"].to_numpy(float), median),
    }
    return out


def _mean_sd(dicts: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Mean and standard deviation (over seeds) of every number in same-shaped dicts."""
    mean: dict[str, Any] = {}
    sd: dict[str, Any] = {}
    for key, v in dicts[0].items():
        if isinstance(v, dict):
            mean[key], sd[key] = _mean_sd([d[key] for d in dicts])
        elif isinstance(v, int | float) and not isinstance(v, bool):
            vals = np.array([float(d[key]) for d in dicts])
            if isinstance(v, int) and np.all(vals == v):  # a count, the same for every seed
                mean[key] = v
                continue
            mean[key] = float(vals.mean())
            sd[key] = float(vals.std(ddof=1)) if len(vals) > 1 else None
    return mean, sd


def compare_conditions(
    test: pd.DataFrame,
    split: pd.DataFrame,
    preds: dict[str, dict[int, pd.DataFrame]],
    per_seed_metrics: dict[str, dict[int, dict[str, Any]]],
    baseline: str,
    cfg: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """The statistics of every condition and of every condition against ``baseline``.

    ``preds[condition][seed]`` are the per-image predictions on ``test`` (in its order), and
    ``per_seed_metrics`` the evaluate stage's metrics of each. Returns the ``conditions``,
    ``comparisons``, ``chance``, ``multiple_testing`` and ``answer`` parts of statistics.json,
    and the seed ensemble's predictions per condition.
    """
    n_boot, bseed = int(cfg["bootstrap"]), int(cfg["seed"])
    perms = int(cfg.get("permutations", 9999))
    seeds = sorted(preds[baseline])
    for name, by_seed in preds.items():
        if sorted(by_seed) != seeds:
            raise ValueError(f"compare: {name!r} has seeds {sorted(by_seed)}, not {seeds}")
    ens = {name: ensemble_predictions([by[s] for s in seeds]) for name, by in preds.items()}
    conditions: dict[str, Any] = {}
    for name, by_seed in preds.items():
        mean, sd = _mean_sd([headline(per_seed_metrics[name][s]) for s in seeds])
        conditions[name] = {
            "seeds": seeds,
            "per_seed": {str(s): per_seed_metrics[name][s] for s in seeds},
            "seed_mean": {
                attr: stats.seed_averaged_metric(
                    attr,
                    test[attr].to_numpy(),
                    [by_seed[s][f"{attr}_pred"].to_numpy() for s in seeds],
                    n_boot,
                    bseed,
                )
                for attr in ATTRS
            },
            "mean": mean,
            "sd": sd,
            "ensemble": condition_metrics(test, ens[name], n_boot, bseed),
            "n_test": int(len(test)),
        }
    comparisons: dict[str, Any] = {}
    for name in preds:
        if name == baseline:
            continue
        cmp = {}
        for attr in ATTRS:
            y = test[attr].to_numpy()
            col = f"{attr}_pred"
            c = stats.paired_difference(
                attr,
                y,
                [preds[baseline][s][col].to_numpy() for s in seeds],
                [preds[name][s][col].to_numpy() for s in seeds],
                n_boot,
                bseed,
                permutations=perms,
            )
            e = stats.paired_difference(
                attr, y, [ens[baseline][col]], [ens[name][col]], n_boot, bseed, test=False
            )
            c["ensemble"] = {k: e[k] for k in ("a", "b", "difference", "ci")}
            c["seeds"] = seeds
            cmp[attr] = c
        comparisons[f"{name}_vs_{baseline}"] = cmp
    family = holm_family(comparisons)
    out = {
        "seeds": seeds,
        "conditions": conditions,
        "comparisons": comparisons,
        "chance": {**chance_levels(split), "margin": dict(cfg.get("chance_margin") or {})},
        "multiple_testing": family,
        "alpha": float(cfg["alpha"]),
        "baseline": baseline,
    }
    out["answer"] = answer.verdicts(out)
    return out, ens


def holm_family(comparisons: dict[str, Any]) -> dict[str, Any]:
    """Holm-Bonferroni over every test of the report (the test over images of each comparison and
    attribute, and the test across seeds where there are two seeds or more); writes ``p_holm``
    into each test and returns the family."""
    tests = []
    for cname, cmp in comparisons.items():
        for attr, c in cmp.items():
            for level, t in (("images", c["test"]), ("seeds", c["across_seeds"])):
                if t is not None and t.get("p_value") is not None:
                    tests.append((f"{cname}/{attr}/{level}", t))
    adjusted = stats.holm([t["p_value"] for _, t in tests])
    for (_, t), p in zip(tests, adjusted, strict=True):
        t["p_holm"] = p
    return {
        "method": "holm",
        "m": len(tests),
        "tests": [
            {"test": key, "p_value": t["p_value"], "p_holm": t["p_holm"]} for key, t in tests
        ],
    }


def metrics_summary(statistics: dict[str, Any]) -> dict[str, Any]:
    """results/metrics.json: flat numbers for `dvc metrics diff` (None values left out)."""
    metrics: dict[str, Any] = {
        "data_source": statistics["data_source"],
        "n_seeds": len(statistics["seeds"]),
    }
    for name, c in statistics["conditions"].items():
        metrics[name] = {
            **c["mean"],
            "sd": _drop_none(c["sd"]),
            "ensemble": headline(c["ensemble"]),
            "per_seed": {s: headline(m) for s, m in c["per_seed"].items()},
        }
    for cname, cmp in statistics["comparisons"].items():
        row: dict[str, Any] = {}
        for attr in ATTRS:
            c, key = cmp[attr], f"{attr}_{METRIC[attr]}_diff"
            seeds_t = c["across_seeds"]
            row.update(
                {
                    key: c["difference"],
                    f"{key}_low": c["ci"]["low"],
                    f"{key}_high": c["ci"]["high"],
                    f"{key}_sd": seeds_t["sd"],
                    f"{key}_ensemble": c["ensemble"]["difference"],
                    f"{attr}_p": c["test"]["p_value"],
                    f"{attr}_p_holm": c["test"].get("p_holm"),
                    f"{attr}_seeds_p": seeds_t["p_value"],
                    f"{attr}_seeds_p_holm": seeds_t.get("p_holm"),
                }
            )
        metrics[cname] = _drop_none(row)
    return metrics


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (_drop_none(v) if isinstance(v, dict) else v) for k, v in d.items() if v is not None}
