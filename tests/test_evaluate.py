"""Evaluation on predictions the test makes: metrics.json shape, groups, the answer, the report."""

import numpy as np
import pandas as pd
import pytest

from maskprivacy import evaluate, html_report, stats


@pytest.fixture(scope="module")
def fake():
    rng = np.random.default_rng(0)
    n = 400
    test = pd.DataFrame(
        {
            "file": [f"{i}.jpg" for i in range(n)],
            "sex": rng.integers(0, 2, n),
            "race": rng.integers(0, 5, n),
            "age": rng.integers(1, 90, n),
        }
    )
    test["age_bucket"] = np.digitize(test["age"], [4, 13, 20, 31, 46, 61])

    def preds(err_rate, age_noise, seed):
        r = np.random.default_rng(seed)
        flip = r.random(n) < err_rate
        return pd.DataFrame(
            {
                "sex_pred": np.where(flip, 1 - test["sex"], test["sex"]),
                "race_pred": np.where(
                    r.random(n) < err_rate * 2, (test["race"] + 1) % 5, test["race"]
                ),
                "age_pred": test["age"] + r.normal(0, age_noise, n),
            }
        )

    return test, {"unmasked": preds(0.05, 4, 1), "masked": preds(0.15, 8, 2)}


def statistics_for(test, preds, demo=False):
    full = {k: evaluate.condition_metrics(test, v, 200, 0) for k, v in preds.items()}
    comps = {
        "masked_vs_unmasked": {
            a: stats.paired_comparison(
                a,
                test[a].to_numpy(),
                preds["unmasked"][f"{a}_pred"].to_numpy(),
                preds["masked"][f"{a}_pred"].to_numpy(),
                n_resamples=200,
                seed=0,
            )
            for a in ("sex", "race", "age")
        }
    }
    return {
        "demo": demo,
        "baseline": "unmasked",
        "conditions": full,
        "comparisons": comps,
        "accounting": {"inputs": 410, "in_split": 400, "rejected": 10},
        "split_counts": {"test": 400},
    }


def test_headline_metrics_are_flat_numbers(fake):
    test, preds = fake
    full = evaluate.condition_metrics(test, preds["unmasked"], 200, 0)
    head = evaluate.headline(full)
    assert set(head) == {"sex", "race", "age", "n_test"}
    assert set(head["sex"]) == set(head["race"]) == {"accuracy", "balanced_accuracy"}
    assert set(head["age"]) == {"mae", "rmse"}
    for attr in ("sex", "race"):
        assert 0 <= head[attr]["accuracy"] <= 1
    assert full["sex"]["accuracy_low"] <= full["sex"]["accuracy"] <= full["sex"]["accuracy_high"]
    assert full["age"]["rmse_low"] <= full["age"]["rmse"] <= full["age"]["rmse_high"]
    assert abs(full["sex"]["accuracy"] - 0.95) < 0.04


def test_group_table_counts_every_image_once_per_condition(fake):
    test, preds = fake
    g = evaluate.group_table(test, preds)
    assert g.groupby("condition")["n"].sum().to_dict() == {"masked": 400, "unmasked": 400}
    d = evaluate.group_differences(g, "masked", "unmasked")
    assert d["n"].sum() == 400
    assert (d["age_mae_diff"].mean()) > 0  # the noisier condition has the larger errors


def test_answer_sentence_names_what_is_protected(fake):
    test, preds = fake
    sentence = html_report.answer_sentence(statistics_for(test, preds))
    assert "400 test faces" in sentence
    assert "(McNemar p = " in sentence and "(Wilcoxon p = " in sentence
    assert "protects sex, race and age significantly" in sentence


def test_answer_sentence_says_what_is_not_protected(fake):
    test, preds = fake
    only_age = preds["unmasked"].copy()
    only_age["age_pred"] = preds["masked"]["age_pred"]  # sex and race as unmasked, age worse
    sentence = html_report.answer_sentence(
        statistics_for(test, {"unmasked": preds["unmasked"], "masked": only_age})
    )
    assert sentence.endswith("a mask protects age significantly, but not sex or race.")


def test_answer_sentence_when_nothing_differs(fake):
    test, preds = fake
    same = {"unmasked": preds["unmasked"], "masked": preds["unmasked"].copy()}
    assert "protects no attribute significantly" in html_report.answer_sentence(
        statistics_for(test, same)
    )


def test_report_is_self_contained_and_says_demo(fake, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from maskprivacy import plots

    test, preds = fake
    plots.age_scatter_png(
        test["age"], preds["masked"]["age_pred"], "age", tmp_path / "age.png", demo=True
    )
    page = html_report.render(
        statistics_for(test, preds, demo=True), {"train": {"epochs": 3}}, tmp_path
    )
    assert "DEMO DATA" in page and "data:image/png;base64," in page
    assert "http://" not in page and "https://" not in page  # nothing fetched from outside
    assert "epochs: 3" in page
    real = html_report.render(statistics_for(test, preds, demo=False), {}, tmp_path)
    assert "DEMO DATA: synthetic" not in real
    assert "The masks" not in real  # no contact sheet given
    from PIL import Image

    (tmp_path / "sheets").mkdir()
    Image.new("RGB", (40, 20), "white").save(tmp_path / "sheets" / "contact_sheet.png")
    with_sheet = html_report.render(
        statistics_for(test, preds, demo=False),
        {},
        tmp_path,
        [tmp_path / "sheets/contact_sheet.png"],
    )
    assert "The masks" in with_sheet and 'alt="contact_sheet"' in with_sheet
