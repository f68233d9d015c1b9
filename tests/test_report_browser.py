"""The report and the README's figures as a person sees them: rendered by headless Chromium at
1280 x 900, the verdict table must sit on the first screen and every image must load.

Chromium is Debian's ``chromium`` (``.ci/run`` installs it where it is missing); where no
headless Chromium is found, the tests skip and say so.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT
from test_evaluate import fake, statistics_for, two_conditions  # noqa: F401 (fake: a fixture)

from maskprivacy.report import html as html_report
from maskprivacy.report import plots

SCREEN = (1280, 900)
NO_CHROMIUM = "no headless Chromium here (Debian: apt-get install chromium; .ci/run installs it)"
PROBE = """<script>
window.addEventListener("load", () => {
  const t = document.querySelector("table.verdict");
  const box = t ? t.getBoundingClientRect() : null;
  const images = [...document.images];
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({
    verdict_bottom: box ? box.bottom + window.scrollY : null,
    images: images.length,
    broken: images.filter((i) => !(i.complete && i.naturalWidth > 0)).map((i) => i.alt),
  });
  document.body.appendChild(out);
});
</script>"""


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


def look(page: Path) -> dict:
    """Open ``page`` in headless Chromium at 1280 x 900 and return what :data:`PROBE` measured:
    where the verdict table ends (px from the top), how many images and which did not load."""
    exe = chromium()
    if exe is None:
        pytest.skip(NO_CHROMIUM)
    probed = page.with_name(page.stem + ".probe.html")
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    res = subprocess.run(
        [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--window-size={SCREEN[0]},{SCREEN[1]}",
            "--virtual-time-budget=20000",
            "--dump-dom",
            probed.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(r'<pre id="probe">(.*?)</pre>', res.stdout, re.S)
    assert found, f"chromium printed no probe ({res.returncode}):\n{res.stderr[-2000:]}"
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))


def report_of(statistics: dict, tmp_path: Path) -> Path:
    """report.html of ``statistics`` with compare's figures (the forest plot first), as the
    compare stage writes it."""
    d = tmp_path / "plots"
    d.mkdir()
    by = html_report.attackers(statistics)
    defs = statistics.get("condition_definitions", [])
    plots.forest_png(by, d / "forest.png", defs)
    plots.levels_png(plots.condition_rows(by, defs), d / "comparison.png", statistics["chance"])
    run = {
        "date": "2026-12-07 12:00 UTC",
        "commit": "abc1234",
        "command": "snakemake --cores all",
        "machine": "2 cores, a CPU, no GPU",
        "wall_min": 3.2,
        "data": "demo",
        "utkface": False,
    }
    page = tmp_path / "report.html"
    page.write_text(html_report.render(statistics, {"train": {"epochs": 2}}, [d], run=run))
    return page


def test_the_verdict_is_on_the_first_screen_of_a_demo_report(fake, tmp_path):  # noqa: F811
    """A demo run's report (banner, two seeds, one attacker): the verdict table ends within the
    first 900 px, and every image loads."""
    test, split, preds = fake
    st = statistics_for(test, split, two_conditions(preds, seeds=(0, 1)), demo=True)
    st["condition_definitions"] = [
        {"name": "unmasked", "train": "unmasked", "test": "unmasked"},
        {"name": "masked", "train": "masked", "test": "masked"},
    ]
    seen = look(report_of(st, tmp_path))
    assert seen["verdict_bottom"] is not None and seen["verdict_bottom"] <= SCREEN[1], seen
    assert seen["images"] >= 2 and seen["broken"] == [], seen


def test_the_verdict_is_on_the_first_screen_with_both_attackers(tmp_path):
    """The published CPU study's statistics (two attackers, three seeds, four conditions): six
    verdict rows, still within the first screen, every image loading."""
    st = json.loads((ROOT / "results/reference/cpu-study-tta/statistics.json").read_text())
    seen = look(report_of(st, tmp_path))
    assert seen["verdict_bottom"] is not None and seen["verdict_bottom"] <= SCREEN[1], seen
    assert seen["images"] >= 2 and seen["broken"] == [], seen


def test_the_readme_figures_load(tmp_path):
    """Every image the README shows (its figure of the answer, the masks) loads in a browser
    from the repository, as GitHub's page or a local preview would load it."""
    readme = (ROOT / "README.md").read_text()
    images = re.findall(r"!\[([^\]]*)\]\(([^)\s]+)\)", readme)
    assert any(src == "docs/img/answer.svg" for _, src in images), images
    body = "".join(f'<img alt="{alt}" src="{(ROOT / src).as_uri()}">' for alt, src in images)
    page = tmp_path / "readme.html"
    page.write_text(f"<!DOCTYPE html><html><body>{body}</body></html>")
    seen = look(page)
    assert seen["images"] == len(images) and seen["broken"] == [], seen
