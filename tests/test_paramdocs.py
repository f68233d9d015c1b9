"""docs/parameters.md's table of every key: generated from the schema and params.yaml, and a check
that fails when either changed without it."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from maskprivacy_workflow import paramdocs

ROOT = Path(__file__).resolve().parents[1]


def copy(tmp_path: Path) -> Path:
    for rel in (paramdocs.DOC, paramdocs.SCHEMA, paramdocs.PARAMS):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, tmp_path / rel)
    return tmp_path


def test_the_committed_table_is_up_to_date():
    assert paramdocs.main(["--root", str(ROOT), "--check"]) == 0


def test_every_key_of_the_schema_has_a_row_with_its_value_and_comment():
    doc = (ROOT / paramdocs.DOC).read_text()
    schema = yaml.safe_load((ROOT / paramdocs.SCHEMA).read_text())
    for section, sub in schema["properties"].items():
        assert f"### `{section}`" in doc
        for key in sub.get("properties", {}):
            assert f"| `{section}.{key}` |" in doc, f"{section}.{key}"
    assert "| `train.epochs` | `8` | integer >= 1 |" in doc
    assert "| `split.method` | `stratified` | stratified \\| uniform \\| random |" in doc
    # a comment carried over two lines of params.yaml is one cell
    assert "compare the files with the committed manifest" in doc and "else off)" in doc


def test_a_key_added_to_the_schema_makes_the_check_fail_until_regenerated(tmp_path, capsys):
    root = copy(tmp_path)
    schema = root / paramdocs.SCHEMA
    text = schema.read_text().replace(
        '      landmarks: {type: string, default: ""}\n',
        '      landmarks: {type: string, default: ""}\n'
        "      new_key: {type: integer, minimum: 3, default: 7}\n",
        1,
    )
    assert text != schema.read_text()
    schema.write_text(text)
    assert paramdocs.main(["--root", str(root), "--check"]) == 1
    assert "docs/parameters.md is stale" in capsys.readouterr().err
    assert paramdocs.main(["--root", str(root)]) == 0
    assert (
        "| `align.new_key` | not set (default `7`) | integer >= 3 |"
        in (root / paramdocs.DOC).read_text()
    )
    assert paramdocs.main(["--root", str(root), "--check"]) == 0


def test_a_changed_comment_or_value_in_params_yaml_makes_the_check_fail(tmp_path):
    root = copy(tmp_path)
    params = root / paramdocs.PARAMS
    params.write_text(params.read_text().replace("epochs: 8", "epochs: 17", 1))
    assert paramdocs.main(["--root", str(root), "--check"]) == 1
    paramdocs.main(["--root", str(root)])
    params.write_text(params.read_text().replace("seconds per network read", "per read", 1))
    assert paramdocs.main(["--root", str(root), "--check"]) == 1


def test_the_prose_around_the_markers_is_kept(tmp_path):
    root = copy(tmp_path)
    doc = root / paramdocs.DOC
    before = doc.read_text().split(paramdocs.BEGIN)[0]
    paramdocs.main(["--root", str(root)])
    assert doc.read_text().startswith(before)
    doc.write_text(before)  # markers gone: said so
    try:
        paramdocs.main(["--root", str(root)])
    except SystemExit as e:
        assert "markers" in str(e)
    else:
        raise AssertionError("no error without the markers")
