"""Evaluation on predictions the test makes: metrics.json shape, groups, the seed ensemble,
the answer sentence (effect, interval, chance, Holm; never "protects" far above chance), the report.
"""

import json

import numpy as np
import pandas as pd
import pytest

from maskprivacy.analysis import answer, compare, conditions
from maskprivacy.core.labels import AGE_BUCKET_STARTS
from maskprivacy.report import html as html_report

N = 400
CFG = {
    "baseline": "unmasked",
    "alpha": 0.05,
    "bootstrap": 200,
    "seed": 0,
    "permutations": 999,
    "chance_margin": {"accuracy": 0.05, "age": 0.10},
}


def labels(n, rng, prefix=""):
    t = pd.DataFrame(
        {
            "file": [f"{prefix}{i}.jpg" for i in range(n)],
            "sex": rng.integers(0, 2, n),
            "race": rng.integers(0, 5, n),
            "age": rng.integers(1, 90, n),
        }
    )
    t["age_bucket"] = np.digitize(t["age"], AGE_BUCKET_STARTS)
    return t


def with_probs(df):
    """Class probabilities that agree with the predictions (what evaluate writes)."""
    df = df.copy()
    df["sex_prob_female"] = np.where(df["sex_pred"] == 1, 0.8, 0.2)
    for k in range(5):
        df[f"race_prob_{k}"] = np.where(df["race_pred"] == k, 0.6, 0.1)
    return df


@pytest.fixture(scope="module")
def fake():
    rng = np.random.default_rng(0)
    test = labels(N, rng)
    train = labels(1000, rng, "train_")
    split = pd.concat([train.assign(split="train"), test.assign(split="test")], ignore_index=True)

    def preds(err_rate, age_noise, seed):
        r = np.random.default_rng(seed)
        flip = r.random(N) < err_rate
        return with_probs(
            pd.DataFrame(
                {
                    "file": test["file"],
                    "sex_pred": np.where(flip, 1 - test["sex"], test["sex"]),
                    "race_pred": np.where(
                        r.random(N) < err_rate * 2, (test["race"] + 1) % 5, test["race"]
                    ),
                    "age_pred": test["age"] + r.normal(0, age_noise, N),
                }
            )
        )

    return test, split, preds


def statistics_for(test, split, preds, demo=False, **cfg):
    """statistics.json as compare writes it, from ``preds[condition][seed]``."""
    per_seed = {
        c: {s: conditions.condition_metrics(test, df, 200, 0) for s, df in by.items()}
        for c, by in preds.items()
    }
    core, _ = compare.compare_conditions(test, split, preds, per_seed, "unmasked", {**CFG, **cfg})
    return {
        "demo": demo,
        "data_source": "demo" if demo else "path",
        **core,
        "accounting": {"inputs": 410, "in_split": 400, "rejected": 10},
        "split_counts": {"test": 400},
    }


def two_conditions(preds, seeds=(0,)):
    return {
        "unmasked": {s: preds(0.05, 4, 10 + s) for s in seeds},
        "masked": {s: preds(0.15, 8, 20 + s) for s in seeds},
    }


def test_headline_metrics_are_flat_numbers(fake):
    test, _, preds = fake
    full = conditions.condition_metrics(test, preds(0.05, 4, 1), 200, 0)
    head = conditions.headline(full)
    assert set(head) == {"sex", "race", "age", "n_test"}
    assert set(head["sex"]) == set(head["race"]) == {"accuracy", "balanced_accuracy"}
    assert set(head["age"]) == {"mae", "rmse"}
    for attr in ("sex", "race"):
        assert 0 <= head[attr]["accuracy"] <= 1
    assert full["sex"]["accuracy_low"] <= full["sex"]["accuracy"] <= full["sex"]["accuracy_high"]
    assert full["age"]["rmse_low"] <= full["age"]["rmse"] <= full["age"]["rmse_high"]
    assert abs(full["sex"]["accuracy"] - 0.95) < 0.04


def test_group_table_counts_every_image_once_per_condition(fake):
    test, _, preds = fake
    g = conditions.group_table(test, {"unmasked": preds(0.05, 4, 1), "masked": preds(0.15, 8, 2)})
    assert g.groupby("condition")["n"].sum().to_dict() == {"masked": 400, "unmasked": 400}
    d = conditions.group_differences(g, "masked", "unmasked")
    assert d["n"].sum() == 400
    assert (d["age_mae_diff"].mean()) > 0  # the noisier condition has the larger errors


def test_ensemble_averages_the_models_outputs():
    files = ["a.jpg", "b.jpg"]
    one = pd.DataFrame(
        {"file": files, "sex_pred": [1, 0], "race_pred": [0, 1], "age_pred": [20.0, 40.0],
         "sex_prob_female": [0.9, 0.4], "race_prob_0": [0.5, 0.1], "race_prob_1": [0.3, 0.8],
         "race_prob_2": [0.2, 0.1]}
    )  # fmt: skip
    two = one.assign(
        sex_pred=[0, 0], race_pred=[1, 1], age_pred=[30.0, 50.0], sex_prob_female=[0.3, 0.2],
        race_prob_0=[0.2, 0.1], race_prob_1=[0.7, 0.8], race_prob_2=[0.1, 0.1],
    )  # fmt: skip
    ens = conditions.ensemble_predictions([one, two])
    assert ens["sex_prob_female"].tolist() == pytest.approx([0.6, 0.3])
    assert ens["sex_pred"].tolist() == [1, 0]
    assert ens["race_pred"].tolist() == [1, 1]  # mean race probs (0.35, 0.5, 0.15) for a.jpg
    assert ens["age_pred"].tolist() == [25.0, 45.0]
    assert conditions.ensemble_predictions([one]).equals(one)  # an ensemble of one is the model
    with pytest.raises(ValueError):
        conditions.ensemble_predictions([one, two.iloc[::-1]])


def test_answer_states_effect_interval_chance_and_holm(fake):
    test, split, preds = fake
    st = statistics_for(test, split, two_conditions(preds, seeds=(0, 1, 2)))
    sentence = answer.sentence(st)
    assert sentence.startswith("On the same 400 test faces, masked against unmasked, each the mean")
    sex = st["comparisons"]["masked_vs_unmasked"]["sex"]
    lo, hi = sorted((-100 * sex["ci"]["low"], -100 * sex["ci"]["high"]))
    assert (
        f"Masking lowered sex accuracy by {-100 * sex['difference']:.1f} points "
        f"(95% CI {lo:.1f} to {hi:.1f}; p = " in sentence
    )
    assert "over 3 training runs, Holm-adjusted" in sentence
    assert "Masking raised age MAE by" in sentence
    chance = st["chance"]["sex"]
    assert f"against {100 * chance['accuracy']:.1f}% for always guessing the training majority" in (
        sentence
    )
    # 1 comparison x 3 attributes x (over faces, across seeds)
    assert st["multiple_testing"]["m"] == 6 and "Holm-Bonferroni over all 6 tests" in sentence
    for t in st["multiple_testing"]["tests"]:
        assert t["p_holm"] >= t["p_value"]
    # still read far above chance: the effect is significant, yet nothing is "protected"
    v = st["answer"]["attributes"]
    assert {a: v[a]["status"] for a in v} == dict.fromkeys(v, "significant_but_readable")
    assert "protect" not in sentence.lower()
    assert "leaves them readable far above chance" in sentence


def test_answer_says_protects_only_near_chance(fake):
    test, split, preds = fake
    rng = np.random.default_rng(5)
    guess = with_probs(
        pd.DataFrame(
            {
                "file": test["file"],
                "sex_pred": rng.integers(0, 2, N),
                "race_pred": rng.integers(0, 5, N),
                "age_pred": rng.uniform(1, 90, N),
            }
        )
    )
    st = statistics_for(test, split, {"unmasked": {0: preds(0.05, 4, 1)}, "masked": {0: guess}})
    sentence = answer.sentence(st)
    assert {a["status"] for a in st["answer"]["attributes"].values()} == {"protects"}
    assert "a mask protects sex, race and age: they are no longer read far above chance" in (
        sentence
    )


def test_skewed_age_change_is_stated_as_the_mean_and_not_as_protection(fake):
    """The issue's case: 80% of faces 0.5 years better, 20% 3 years worse: the mean rises."""
    test, split, preds = fake
    base = preds(0.05, 4, 1)
    err_a = np.full(N, 3.0)
    err_b = np.where(np.arange(N) < 320, 2.5, 6.0)
    a = base.assign(age_pred=test["age"] + err_a)
    b = base.assign(age_pred=test["age"] - err_b)  # errors of either sign, same sizes
    st = statistics_for(test, split, {"unmasked": {0: a}, "masked": {0: b}})
    age = st["comparisons"]["masked_vs_unmasked"]["age"]
    assert age["difference"] == pytest.approx(0.2)
    assert age["test"]["p_value"] < 0.05  # the mean did rise, significantly
    sentence = answer.sentence(st)
    assert "Masking raised age MAE by 0.20 years" in sentence
    assert "protect" not in sentence.lower()
    assert st["answer"]["attributes"]["age"]["status"] == "significant_but_readable"
    # sex and race did not change at all
    assert "the change in sex or race is not significant" in sentence
    # one seed: the spread across training runs is not measured, and the sentence says so
    assert "no test across runs" in sentence
    assert st["comparisons"]["masked_vs_unmasked"]["sex"]["across_seeds"]["p_value"] is None


def test_answer_when_nothing_differs(fake):
    test, split, preds = fake
    same = preds(0.05, 4, 1)
    st = statistics_for(test, split, {"unmasked": {0: same}, "masked": {0: same.copy()}})
    sentence = answer.sentence(st)
    assert "the change in sex, race or age is not significant" in sentence
    assert "protect" not in sentence.lower()


def test_metrics_json_is_flat_numbers_for_dvc(fake):
    test, split, preds = fake
    st = statistics_for(test, split, two_conditions(preds, seeds=(0, 1)))
    m = compare.metrics_summary(st)
    assert m["n_seeds"] == 2
    assert m["masked"]["sex"]["accuracy"] == pytest.approx(
        np.mean([m["masked"]["per_seed"][s]["sex"]["accuracy"] for s in ("0", "1")])
    )
    assert m["masked"]["sd"]["age"]["mae"] > 0 and "ensemble" in m["masked"]
    row = m["masked_vs_unmasked"]
    assert {"sex_accuracy_diff", "sex_p", "sex_p_holm", "sex_seeds_p_holm", "age_mae_diff"} <= set(
        row
    )

    def leaves(d):
        for v in d.values():
            yield from leaves(v) if isinstance(v, dict) else [v]

    assert all(isinstance(v, int | float | str) for v in leaves(m))
    json.dumps(m, allow_nan=False)


def test_report_is_self_contained_and_says_demo(fake, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from maskprivacy.report import plots

    test, split, preds = fake
    both = two_conditions(preds, seeds=(0, 1))
    plots.age_scatter_png(
        test["age"], both["masked"][0]["age_pred"], "age", tmp_path / "age.png", demo=True
    )
    page = html_report.render(
        statistics_for(test, split, both, demo=True), {"train": {"epochs": 3}}, tmp_path
    )
    assert "DEMO DATA" in page and "data:image/png;base64," in page
    assert "http://" not in page and "https://" not in page  # nothing fetched from outside
    assert "epochs: 3" in page
    assert "Holm-Bonferroni" in page and "seed 1" in page and "ensemble" in page
    assert "<h2>Method</h2>" in page and "<h2>Chance</h2>" in page
    real = html_report.render(statistics_for(test, split, both, demo=False), {}, tmp_path)
    assert "DEMO DATA: synthetic" not in real
    assert "The masks" not in real  # no contact sheet given
    from PIL import Image

    (tmp_path / "sheets").mkdir()
    Image.new("RGB", (40, 20), "white").save(tmp_path / "sheets" / "contact_sheet.png")
    with_sheet = html_report.render(
        statistics_for(test, split, both, demo=False),
        {},
        tmp_path,
        [tmp_path / "sheets/contact_sheet.png"],
    )
    assert "The masks" in with_sheet and 'alt="contact_sheet"' in with_sheet


def test_the_compare_stage_does_not_import_torch():
    """compare runs in a light environment: its whole module graph is free of torch."""
    import subprocess
    import sys

    code = "import sys, maskprivacy.stages.compare; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_compare_stage_reads_the_rules_lists_by_condition_seed_and_model():
    from maskprivacy.stages.compare import by_condition_and_seed, by_model

    files = ["a0", "a1", "b0", "b1"]
    assert by_condition_and_seed(files, ["a", "b"], [0, 1]) == {
        "a": {0: "a0", 1: "a1"},
        "b": {0: "b0", 1: "b1"},
    }
    with pytest.raises(ValueError, match="other train.seeds"):
        by_condition_and_seed(files, ["a", "b"], [0])
    assert by_model(["m0", "u0"], ["masked", "unmasked"], [0]) == {
        "masked seed 0": "m0",
        "unmasked seed 0": "u0",
    }
