"""The answer: one verdict per attribute and the sentence that states it, from the statistics.

The rules the sentence follows (the report's "Method" section says them too):

- Its direction is the sign of the reported difference (condition minus baseline, averaged over
  the seeds' models), which is the very number both tests test (:mod:`maskprivacy.analysis.stats`).
- A change is *significant* when the test over test images and, with two seeds or more, the test
  across seeds both reject at ``compare.alpha`` after Holm-Bonferroni over every test the report
  makes. With one seed the test across seeds is not available, and the sentence says so.
- Its size is given with its 95% interval and against chance: always guessing the training
  majority (sex, race) or median age (:func:`maskprivacy.analysis.compare.chance_levels`).
- An attribute is *still read far above chance* when, on the condition's faces, the seed mean's
  or the seed ensemble's 95% interval clears chance by a margin (``compare.chance_margin``):
  accuracy's lower bound at least ``accuracy`` (a fraction, 0.05 = 5 points) above the majority
  guess's accuracy; age MAE's upper bound at most ``1 - age`` times the median guess's MAE.
- "protects" is said only of an attribute whose change is significant, in the direction of
  privacy, and that is no longer read far above chance; otherwise the sentence states what is
  still read.
"""

from __future__ import annotations

from typing import Any

CLASSIFICATION = ("sex", "race")
DEFAULT_MARGIN = {"accuracy": 0.05, "age": 0.10}


def fmt_p(p: float | None) -> str:
    if p is None:
        return "n/a"
    return f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}"


def primary_comparison(statistics: dict[str, Any]) -> str | None:
    """The comparison the sentence is about: ``masked_vs_<baseline>``, else the first."""
    comps = statistics.get("comparisons") or {}
    if not comps:
        return None
    return next((k for k in comps if k.startswith("masked_vs_")), next(iter(comps)))


def _far_above_chance(
    attr: str, cond: dict[str, Any], chance: dict[str, Any], margin: dict[str, float]
) -> tuple[bool, float]:
    """Whether the condition's seed mean or ensemble clears chance by the margin; the bar."""
    mean, ens = cond["seed_mean"][attr], cond["ensemble"][attr]
    if attr in CLASSIFICATION:
        bar = chance[attr]["accuracy"] + margin["accuracy"]
        lows = (mean["low"], ens["accuracy_low"])
        return any(v is not None and v >= bar for v in lows), bar
    bar = (1.0 - margin["age"]) * chance["age"]["mae"]
    highs = (mean["high"], ens["mae_high"])
    return any(v is not None and v <= bar for v in highs), bar


def verdicts(statistics: dict[str, Any]) -> dict[str, Any]:
    """Per attribute of the primary comparison: the change, its tests (Holm-adjusted), whether
    it is significant, the privacy it gives, and whether the attribute is still read far above
    chance. ``status``: ``protects``, ``significant_but_readable``, ``helps_the_attacker`` or
    ``not_significant``."""
    name = primary_comparison(statistics)
    if name is None:
        return {"comparison": None, "attributes": {}}
    cond_name, base = name.rsplit("_vs_", 1)
    alpha = float(statistics.get("alpha", 0.05))
    chance = statistics["chance"]
    margin = {**DEFAULT_MARGIN, **(chance.get("margin") or {})}
    cond = statistics["conditions"][cond_name]
    out: dict[str, Any] = {}
    for attr, c in statistics["comparisons"][name].items():
        p_images = c["test"].get("p_holm", c["test"]["p_value"])
        seeds_t = c["across_seeds"]
        multi = seeds_t["n_seeds"] >= 2
        p_seeds = seeds_t.get("p_holm", seeds_t["p_value"]) if multi else None
        # Over seeds too, when they vary: seeds that all give the same difference (a deterministic
        # attacker, such as the recognizer's linear heads) leave no spread to test, and training
        # randomness nothing to explain; the test over faces decides then.
        no_spread = multi and p_seeds is None and seeds_t.get("sd") == 0
        significant = p_images < alpha and (
            not multi or no_spread or (p_seeds is not None and p_seeds < alpha)
        )
        diff = c["difference"]
        privacy = diff > 0 if attr == "age" else diff < 0  # the attacker does worse
        far, bar = _far_above_chance(attr, cond, chance, margin)
        if not significant:
            status = "not_significant"
        elif not privacy:
            status = "helps_the_attacker"
        elif far:
            status = "significant_but_readable"
        else:
            status = "protects"
        out[attr] = {
            "difference": diff,
            "ci": [c["ci"]["low"], c["ci"]["high"]],
            "p_images_holm": p_images,
            "p_seeds_holm": p_seeds,
            "significant": bool(significant),
            "towards_privacy": bool(privacy),
            "far_above_chance": bool(far),
            "chance_bar": bar,
            "status": status,
        }
    return {
        "comparison": name,
        "condition": cond_name,
        "baseline": base,
        "alpha": alpha,
        "margin": margin,
        "n_tests": int((statistics.get("multiple_testing") or {}).get("m", 0)),
        "attributes": out,
    }


def join_words(words: list[str], last: str = "and") -> str:
    """``a``, ``a and b``, ``a, b and c`` (or ``last`` instead of "and")."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} {last} {words[-1]}"


def by_status(attributes: dict[str, Any]) -> dict[str, list[str]]:
    """The attributes by their verdict's ``status``, in their order (:func:`verdicts`)."""
    by: dict[str, list[str]] = {}
    for attr, a in attributes.items():
        by.setdefault(a["status"], []).append(attr)
    return by


def _change(attr: str, c: dict[str, Any], subject: str, v: dict[str, Any], n_seeds: int) -> str:
    """'masking lowered sex accuracy by 2.1 points (95% CI 1.0 to 3.2; p = ...)'."""
    diff, lo, hi = c["difference"], c["ci"]["low"], c["ci"]["high"]
    unit, scale, what = (
        ("years", 1.0, "age MAE") if attr == "age" else ("points", 100.0, f"{attr} accuracy")
    )
    sign = -1.0 if diff < 0 else 1.0
    verb = "lowered" if diff < 0 else "raised" if diff > 0 else "did not change"
    a, b = sorted((sign * scale * lo, sign * scale * hi)) if lo is not None else (None, None)
    interval = f"95% CI {a:.2f} to {b:.2f}" if a is not None else "no interval"
    if attr != "age" and a is not None:
        interval = f"95% CI {a:.1f} to {b:.1f}"
    size = f"{scale * abs(diff):.2f}" if attr == "age" else f"{scale * abs(diff):.1f}"
    tests = f"p = {fmt_p(v['p_images_holm'])} over faces"
    if n_seeds >= 2:
        seeds_t = c["across_seeds"]
        tests += (
            f", p = {fmt_p(v['p_seeds_holm'])} over {n_seeds} training runs"
            if seeds_t["p_value"] is not None
            else f", no test over training runs ({seeds_t['note']})"
        )
    body = f"by {size} {unit} ({interval}; {tests}, Holm-adjusted)"
    return f"{subject} {verb} {what} {body}" if diff else f"{subject} {verb} {what} ({tests})"


def _remaining(
    attr: str, cond: dict[str, Any], chance: dict[str, Any], cond_name: str, n_seeds: int
) -> str:
    """'sex is still read from 91.4% of masked faces (...), against 52.0% for ...'."""
    mean, ens = cond["seed_mean"][attr], cond["ensemble"][attr]
    ens_text = f"the {n_seeds}-run ensemble: " if n_seeds > 1 else ""
    if attr in CLASSIFICATION:
        guess = chance[attr]
        extra = f" ({ens_text}{100 * ens['accuracy']:.1f}%)" if n_seeds > 1 else ""
        return (
            f"{attr} is still read from {100 * mean['estimate']:.1f}% of {cond_name} faces{extra}, "
            f"against {100 * guess['accuracy']:.1f}% for always guessing the training majority "
            f"({guess['guess']})"
        )
    extra = f" ({ens_text}{ens['mae']:.2f})" if n_seeds > 1 else ""
    return (
        f"age is still estimated within {mean['estimate']:.2f} years on average on {cond_name} "
        f"faces{extra}, against {chance['age']['mae']:.2f} for always guessing the training "
        f"median ({chance['age']['guess']:g} years)"
    )


def sentence(statistics: dict[str, Any]) -> str:
    """The answer in a few sentences: each attribute's change with its interval, tests and the
    privacy that remains, then the verdict (see the module docstring for the rules)."""
    v = statistics.get("answer") or verdicts(statistics)
    if v["comparison"] is None:
        return "Only one condition was evaluated, so there is no paired comparison to report."
    cond_name, base = v["condition"], v["baseline"]
    cmp = statistics["comparisons"][v["comparison"]]
    cond = statistics["conditions"][cond_name]
    chance = statistics["chance"]
    n_seeds = len(statistics.get("seeds") or [0])
    n = cmp["sex"]["n"]
    subject = "masking" if cond_name == "masked" else f"{cond_name} (against {base})"
    runs = (
        f"each the mean of {n_seeds} training runs (seeds)"
        if n_seeds > 1
        else "one training run each (train.seeds has one seed, so the spread across training "
        "runs is not measured and there is no test across runs)"
    )
    parts = [
        f"{_change(a, cmp[a], subject, v['attributes'][a], n_seeds)}; "
        f"{_remaining(a, cond, chance, cond_name, n_seeds)}"
        for a in cmp
    ]
    head = f"On the same {n:,} test faces, {cond_name} against {base}, {runs}: "
    body = ". ".join(p[0].upper() + p[1:] for p in parts)
    by = by_status(v["attributes"])
    m = v["margin"]
    verdict = []
    if by.get("protects"):
        w = by["protects"]
        verdict.append(
            f"a mask protects {join_words(w)}: {'it is' if len(w) == 1 else 'they are'} no longer "
            "read far above chance"
        )
    if by.get("significant_but_readable"):
        w = by["significant_but_readable"]
        verdict.append(
            f"the mask's effect on {join_words(w)} is significant but leaves "
            f"{'it' if len(w) == 1 else 'them'} readable far above chance"
        )
    if by.get("helps_the_attacker"):
        verdict.append(
            f"masking made {join_words(by['helps_the_attacker'])} significantly easier to read"
        )
    if by.get("not_significant"):
        verdict.append(
            f"the change in {join_words(by['not_significant'], 'or')} is not significant"
        )
    rule = (
        f"(far above chance: for the seed mean or the ensemble, accuracy's lower 95% bound at "
        f"least {100 * m['accuracy']:g} points above the majority guess, or age MAE's upper 95% "
        f"bound at most {100 * (1 - m['age']):g}% of the median guess's)"
    )
    return (
        f"{head}{body}. At alpha = {v['alpha']:g}, with Holm-Bonferroni over all {v['n_tests']} "
        f"tests of {statistics.get('holm_scope', 'this report')}, {'; '.join(verdict)} {rule}."
    )
