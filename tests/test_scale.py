"""Every step after evaluate at the size of a real run, on predictions the test makes.

The demo has 42 test faces: code that only ever met those can break on a real set. A real
UTKFace run has about 2,200 test faces, three seeds and, in the mask study, 7 x 7 = 49
conditions; this file runs the statistics, the answer, the metrics, the HTML report and the mask
study's matrix at that size (with few resamples: the size of the test set, not the number of
resamples, is what broke ``sign_flip_test`` once, as ``2.0**n`` overflowed past 1,023 non-zero
differences).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from test_evaluate import labels
from test_study import predictions

from maskprivacy.analysis import answer, compare, matrix, stats
from maskprivacy.analysis.conditions import condition_metrics, group_differences, group_table
from maskprivacy.masks import sets
from maskprivacy.report import html as html_report
from maskprivacy.report import study

N_TEST = 2200  # UTKFace's test part: 2,178 faces after the duplicate-grouped split
N_TRAIN = 17500
SEEDS = (0, 1, 2)
# the mask study: six masked sets beside the unmasked faces, every train set x every test set
STUDY_SETS = {
    "paper": {"paper": 1.0},
    "surgical": {"surgical": 1.0},
    "n95": {"n95": 1.0},
    "kn95": {"kn95": 1.0},
    "cloth": {"cloth": 1.0},
    "mixed": {"paper": 1.0, "surgical": 1.0, "cloth": 1.0},
}
CFG = {
    "baseline": "unmasked",
    "alpha": 0.05,
    "bootstrap": 30,
    "seed": 0,
    "permutations": 1999,
    "chance_margin": {"accuracy": 0.05, "age": 0.10},
}
FOUR = [
    {"name": "unmasked", "train": "unmasked", "test": "unmasked"},
    {"name": "masked", "train": "masked", "test": "masked"},
    {"name": "unmasked_to_masked", "train": "unmasked", "test": "masked"},
    {"name": "masked_to_unmasked", "train": "masked", "test": "unmasked"},
]

# the four conditions' made-up predictions: (error rate of sex and race, age MAE)
FOUR_QUALITY = {
    "unmasked": (0.08, 6),
    "masked": (0.12, 8),
    "unmasked_to_masked": (0.30, 14),
    "masked_to_unmasked": (0.15, 9),
}


def finite_json(obj) -> str:
    """JSON as compare writes it: NaN or infinity anywhere is an error."""
    return json.dumps(obj, allow_nan=False)


@pytest.fixture(scope="module")
def real_size():
    rng = np.random.default_rng(7)
    test, train = labels(N_TEST, rng), labels(N_TRAIN, rng, "train_")
    split = pd.concat([train.assign(split="train"), test.assign(split="test")], ignore_index=True)
    return test, split, float(np.median(train["age"]))


def compare_all(test, split, median, conditions, quality):
    preds = {
        c["name"]: {s: predictions(test, *quality(k, c), median, 1000 * k + s) for s in SEEDS}
        for k, c in enumerate(conditions)
    }
    per_seed = {
        c: {s: condition_metrics(test, df, CFG["bootstrap"], 0) for s, df in by.items()}
        for c, by in preds.items()
    }
    core, ens = compare.compare_conditions(test, split, preds, per_seed, "unmasked", CFG)
    return preds, core, ens


def test_sign_flip_test_on_a_real_test_set():
    """2,178 non-zero paired differences (every real test set has more than 1,023)."""
    rng = np.random.default_rng(0)
    for n in (1023, 1024, 1075, 2178, 20000):
        d = rng.choice([-1.0, 1.0], size=n) + 0.2  # a shift: a clear difference
        got = stats.sign_flip_test(d, n_resamples=199, seed=0)
        assert got["n_nonzero"] == n and got["exact"] is False
        assert 0 < got["p_value"] <= 1 and math.isfinite(got["p_value"])
        assert got["p_value"] == pytest.approx(2 / 200)  # never below 2 / (n_resamples + 1)
    null = rng.normal(0, 1, 2178)
    assert stats.sign_flip_test(null, 199, 0)["p_value"] > 0.01
    # the exact test still runs where the patterns are few
    assert stats.sign_flip_test([1.0, -2.0, 3.0], 9999, 0)["exact"] is True


def test_four_conditions_three_seeds_at_real_size(real_size, tmp_path):
    """compare's statistics, the answer sentence, metrics.json and the HTML report for the CPU
    preset's study: four conditions x three seeds on 2,200 test faces."""
    test, split, median = real_size
    preds, core, ens = compare_all(test, split, median, FOUR, lambda k, c: FOUR_QUALITY[c["name"]])
    statistics = {
        "demo": False,
        "data_source": "path",
        **core,
        "condition_definitions": FOUR,
        "accounting": {"inputs": 23708, "in_split": 21915, "rejected": 1793},
        "split_counts": {"train": 17535, "val": 2202, "test": 2178},
    }
    finite_json(statistics)
    assert statistics["seeds"] == list(SEEDS)
    family = statistics["multiple_testing"]
    assert family["m"] == 3 * 3 * 2  # 3 comparisons x 3 attributes x (images, seeds)
    assert all(0 < t["p_holm"] <= 1 for t in family["tests"])
    # a 4-point drop in accuracy on 2,200 faces is found, after Holm
    assert statistics["comparisons"]["masked_vs_unmasked"]["sex"]["test"]["p_holm"] < 0.05
    sentence = answer.sentence(statistics)
    # its figures are the predictions': the seed-mean drop in sex accuracy, masked - unmasked
    acc = {
        c: np.mean([(preds[c][s]["sex_pred"] == test["sex"]).mean() for s in SEEDS])
        for c in ("masked", "unmasked")
    }
    drop = 100 * (acc["unmasked"] - acc["masked"])
    assert sentence.startswith(
        f"On the same {N_TEST:,} test faces, masked against unmasked, each the mean of 3 training "
        f"runs (seeds): Masking lowered sex accuracy by {drop:.1f} points (95% CI "
    )
    assert "nan" not in sentence
    metrics = compare.metrics_summary(statistics)
    finite_json(metrics)
    assert metrics["masked"]["sex"]["accuracy"] == pytest.approx(
        np.mean([(preds["masked"][s]["sex_pred"] == test["sex"]).mean() for s in SEEDS])
    )
    groups = group_table(test, ens)
    assert not group_differences(groups, "masked", "unmasked").empty
    page = html_report.render(statistics, {"train": {"epochs": 8}}, tmp_path)
    assert "Holm-Bonferroni" in page and "seed 2" in page and "DEMO DATA" not in page


def test_an_attacker_whose_seeds_agree_is_judged_over_faces(real_size):
    """Seeds that all give the same predictions (the recognizer's linear heads) leave the test
    across seeds undefined: the verdict rests on the test over faces, as with one seed."""
    test, split, median = real_size
    preds = {
        c["name"]: {s: predictions(test, *FOUR_QUALITY[c["name"]], median, 1000 * k) for s in SEEDS}
        for k, c in enumerate(FOUR)
    }
    per_seed = {
        c: {s: condition_metrics(test, df, CFG["bootstrap"], 0) for s, df in by.items()}
        for c, by in preds.items()
    }
    core, _ = compare.compare_conditions(test, split, preds, per_seed, "unmasked", CFG)
    seeds_test = core["comparisons"]["masked_vs_unmasked"]["age"]["across_seeds"]
    assert seeds_test["p_value"] is None and "no spread" in seeds_test["note"]
    got = answer.verdicts(core)["attributes"]
    for attr in ("sex", "race", "age"):
        assert got[attr]["significant"] and got[attr]["status"] == "significant_but_readable"
    assert "not significant" not in answer.sentence(core)


def test_mask_study_49_conditions_three_seeds_at_real_size(real_size, tmp_path):
    """The mask study's matrix, its sentences, metrics and page: 7 x 7 conditions x 3 seeds."""
    test, split, median = real_size
    conditions = sets.study_conditions(STUDY_SETS)
    assert len(conditions) == 49

    def quality(k, c):
        same = c["train"] == c["test"]
        err = 0.08 if c["test"] == "unmasked" else 0.12 if same else 0.25
        return err, (6 if same else 11) + k % 3

    _, core, _ = compare_all(test, split, median, conditions, quality)
    finite_json(core)
    data_sets = sets.data_sets(STUDY_SETS)
    mat = matrix.study_matrix(core, conditions, data_sets)
    assert (
        sum(len(row) for row in mat["cells"].values()) == 49
        and mat["n_seeds"] == 3
        and mat["n_test"] == N_TEST
    )
    metrics = matrix.matrix_metrics(mat)
    finite_json(metrics)
    from test_masks import HOPPER

    faces = [HOPPER + float(i % 5) for i in range(N_TEST)]
    got, page = study.build(core, conditions, STUDY_SETS, faces, (224, 224), tmp_path, max_faces=20)
    finite_json(got)
    assert set(got["sentences"]) == set(STUDY_SETS)
    assert page.count("<img ") >= 3
