"""Every plot function writes a valid PNG; demo figures carry the red DEMO DATA banner."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402

from maskprivacy.core.labels import RACES, SEXES  # noqa: E402
from maskprivacy.report import plots  # noqa: E402

RACE_CONFUSION = [
    [30, 2, 1, 0, 1],
    [3, 20, 0, 1, 0],
    [0, 1, 25, 2, 0],
    [1, 0, 2, 15, 1],
    [0, 0, 0, 0, 0],
]


def _history(shift: float = 0.0, full: bool = True) -> pd.DataFrame:
    e = np.arange(1, 6)
    df = pd.DataFrame({"epoch": e, "train_loss": 3.0 / e + shift, "val_loss": 3.2 / e + shift})
    if full:
        df["val_sex_acc"] = 0.5 + 0.08 * e
        df["val_race_acc"] = 0.3 + 0.1 * e
        df["val_age_mae"] = 20.0 / e
    return df


def _rows() -> list[dict]:
    rows = []
    for cond, acc, mae in (("unmasked", 0.9, 6.0), ("masked", 0.8, 9.0)):
        rows.append(
            dict(
                condition=cond,
                attribute="sex",
                metric="accuracy",
                estimate=acc,
                low=acc - 0.03,
                high=acc + 0.03,
            )
        )
        rows.append(
            dict(
                condition=cond,
                attribute="race",
                metric="accuracy",
                estimate=acc - 0.1,
                low=None,
                high=None,
            )
        )
        rows.append(
            dict(
                condition=cond,
                attribute="age",
                metric="mae",
                estimate=mae,
                low=mae - 0.5,
                high=mae + 0.6,
            )
        )
    return rows


def _levels() -> list[dict]:
    """levels_figure's rows: per condition, each attribute's estimate and interval."""
    by = {}
    for r in _rows():
        by.setdefault(r["condition"], {"label": r["condition"], "attacker": "CNN"})[
            r["attribute"]
        ] = r
    return list(by.values())


def _age() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    t = rng.uniform(1, 90, 300)
    return t, t + rng.normal(0, 6, 300)


# (figure builder, png writer, args) for every plot.
CASES = {
    "confusion_sex": (
        plots.confusion_matrix_figure,
        plots.confusion_matrix_png,
        ([[40, 10], [5, 45]], list(SEXES), "sex: unmasked"),
    ),
    "confusion_race": (
        plots.confusion_matrix_figure,
        plots.confusion_matrix_png,
        (RACE_CONFUSION, list(RACES), "race: masked"),
    ),
    "age": (plots.age_scatter_figure, plots.age_scatter_png, (*_age(), "age: unmasked")),
    "curves_one": (plots.learning_curves_figure, plots.learning_curves_png, (_history(),)),
    "curves_many": (
        plots.learning_curves_figure,
        plots.learning_curves_png,
        ({"unmasked": _history(), "masked": _history(0.3, full=False)},),
    ),
    "levels": (plots.levels_figure, plots.levels_png, (_levels(),)),
}


def _banners(fig: Figure) -> list:
    return [t for t in fig.texts if t.get_text() == plots.DEMO_TEXT]


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("demo", [False, True])
def test_png_written(tmp_path: Path, name: str, demo: bool):
    _, write, args = CASES[name]
    path = tmp_path / "sub" / f"{name}.png"
    out = write(*args, path, demo=demo)
    assert Path(out) == path and path.is_file()
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG"
        assert im.width > 300 and im.height > 200
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left behind


@pytest.mark.parametrize("name", list(CASES))
def test_demo_banner_on_every_figure(name: str):
    build, _, args = CASES[name]
    assert _banners(build(*args)) == []
    fig = build(*args, demo=True)
    (banner,) = _banners(fig)
    assert to_rgba(banner.get_color()) == to_rgba("red")
    assert banner.get_visible()


def test_demo_banner_direct():
    fig = Figure()
    fig.add_subplot().plot([0, 1], [0, 1])
    text = plots.demo_banner(fig)
    assert text in fig.texts and text.get_text() == "DEMO DATA: synthetic labels, not UTKFace"


def test_confusion_row_normalised_colours():
    fig = plots.confusion_matrix_figure([[1, 3], [0, 0]], list(SEXES), "t")
    ax = fig.axes[0]
    rate = np.asarray(ax.images[0].get_array())
    assert rate.tolist() == [[0.25, 0.75], [0.0, 0.0]]  # empty row stays 0, not NaN
    texts = [t.get_text() for t in ax.texts]
    assert texts[0].startswith("1") and texts[1].startswith("3")


def test_bad_inputs():
    with pytest.raises(ValueError):
        plots.confusion_matrix_figure([[1, 2], [3, 4]], list(RACES), "t")
    with pytest.raises(ValueError):
        plots.learning_curves_figure({"x": pd.DataFrame({"epoch": [1]})})
    with pytest.raises(ValueError):
        plots.levels_figure([])
