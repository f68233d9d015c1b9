"""maskprivacy_workflow.plan: settings reach every job param taken from the config; the script's view.

The end-to-end check (export with Snakemake, run without it, same outputs) is in
test_pipeline.py, next to the Snakemake run it compares with.
"""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import ROOT

from maskprivacy.core.params import ParamsError
from maskprivacy_workflow import plan


def small_plan() -> dict:
    config = yaml.safe_load((ROOT / "params.yaml").read_text())

    def params(*pairs):
        names = {n: [i, None] for i, (n, _) in enumerate(pairs)}
        items = [v for _, v in pairs]
        return {
            "items": json.loads(json.dumps(items)),
            "names": names,
            "from_config": [plan.config_path(v, config) for v in items],
        }

    def job(rule, *pairs):
        empty = {"items": [], "names": {}}
        return {
            "rule": rule,
            "script": f"workflow/scripts/{rule}.py",
            "wildcards": {},
            "threads": 1,
            "input": empty,
            "output": empty,
            "log": empty,
            "params": params(*pairs),
        }

    return {
        "version": plan.PLAN_VERSION,
        "cores": 2,
        "config": config,
        "jobs": [
            job("train", ("cfg", config["train"])),
            job("evaluate", ("cfg", config["evaluate"]), ("train", config["train"])),
            job(
                "compare",
                ("cfg", config["compare"]),
                ("conditions", config["evaluate"]["conditions"]),
                ("all", config),
            ),
        ],
    }


def param(p: dict, rule: str, name: str):
    job = next(j for j in p["jobs"] if j["rule"] == rule)
    return job["params"]["items"][job["params"]["names"][name][0]]


def test_a_setting_reaches_config_and_every_param_that_holds_it(monkeypatch):
    monkeypatch.chdir(ROOT)
    p = small_plan()
    q = plan.apply_overrides(p, ["train.epochs=7", "train.augment.flip=0.0"])
    assert q["config"]["train"]["epochs"] == 7
    assert param(q, "train", "cfg")["epochs"] == 7
    assert param(q, "evaluate", "train")["epochs"] == 7
    assert param(q, "compare", "all")["train"]["epochs"] == 7
    assert param(q, "train", "cfg")["augment"]["flip"] == 0.0
    assert param(p, "train", "cfg")["epochs"] != 7  # the plan given is left as it was

    one = [{"name": "unmasked", "train": "unmasked", "test": "unmasked"}]
    q = plan.apply_overrides(
        p, ["evaluate.conditions=" + json.dumps(one), "compare.baseline=unmasked"]
    )
    assert param(q, "compare", "conditions") == one  # a param inside the setting
    assert param(q, "evaluate", "cfg")["conditions"] == one


def test_bad_settings_are_refused_with_the_key(monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(ValueError, match="section.key=value"):
        plan.apply_overrides(small_plan(), ["epochs=3"])
    with pytest.raises(ValueError, match="no section 'trian'"):
        plan.apply_overrides(small_plan(), ["trian.epochs=3"])
    with pytest.raises(ParamsError, match="train.epochs"):
        plan.apply_overrides(small_plan(), ["train.epochs=0"])


def test_named_lists_look_like_snakemakes():
    n = plan.Named(["a.csv", "b.csv", "c.csv", "log"], {"one": [0, None], "many": [1, 3]})
    assert n.one == "a.csv" and n.many == ["b.csv", "c.csv"] and n[3] == "log"
    assert list(n.many) == list(n[1:3])


def test_a_plan_of_another_version_is_refused():
    with pytest.raises(ValueError, match="plan version"):
        plan.run({"version": 0, "jobs": []})


def test_a_failing_job_names_itself(tmp_path):
    (tmp_path / "boom.py").write_text("raise SystemExit(snakemake.params.cfg['why'])\n")
    job = {
        "rule": "boom",
        "script": "boom.py",
        "wildcards": {"shard": "3"},
        "threads": 1,
        "input": {"items": [], "names": {}},
        "output": {"items": ["out/x.csv"], "names": {"x": [0, None]}},
        "log": {"items": ["logs/boom.log"], "names": {}},
        "params": {"items": [{"why": "bad input"}], "names": {"cfg": [0, None]}},
    }
    with pytest.raises(RuntimeError, match=r"boom\[shard=3\].*bad input"):
        plan.run({"version": plan.PLAN_VERSION, "config": {}, "jobs": [job]}, tmp_path)
    assert (tmp_path / "out").is_dir() and (tmp_path / "logs").is_dir()  # parents made first


def script_job(name: str, code: str, root, inputs=(), threads=1, gpu=0) -> dict:
    (root / f"{name}.py").write_text(code)
    return {
        "rule": name,
        "script": f"{name}.py",
        "wildcards": {},
        "threads": threads,
        "gpu": gpu,
        "input": {"items": list(inputs), "names": {}},
        "output": {"items": [f"out/{name}.txt"], "names": {"done": [0, None]}},
        "log": {"items": [], "names": {}},
        "params": {"items": [], "names": {}},
    }


# Each job checks its inputs exist, then writes its output; a gpu job holds an exclusive lock
# file while it works, so two at once would make the second fail.
WRITE = "from pathlib import Path\nPath(snakemake.output.done).write_text('ok')\n"
NEEDS = "from pathlib import Path\nassert all(Path(f).exists() for f in snakemake.input)\n"
GPU = (
    "import os, time\n"
    "fd = os.open('gpu.lock', os.O_CREAT | os.O_EXCL)\n"
    "time.sleep(0.3)\n"
    "os.close(fd); os.remove('gpu.lock')\n"
)


def test_parallel_jobs_wait_for_their_inputs_and_share_one_gpu(tmp_path):
    jobs = [
        script_job("a", "import time; time.sleep(0.3)\n" + WRITE, tmp_path),
        script_job("b", NEEDS + WRITE, tmp_path, inputs=["out/a.txt"]),
        script_job("c", NEEDS + WRITE, tmp_path, inputs=["out/a.txt"]),
        script_job("train1", GPU + WRITE, tmp_path, gpu=1),
        script_job("train2", GPU + WRITE, tmp_path, gpu=1),
        script_job("d", NEEDS + WRITE, tmp_path, inputs=["out/b.txt", "out/train2.txt"]),
    ]
    p = {"version": plan.PLAN_VERSION, "cores": 4, "config": {}, "jobs": jobs}
    seconds = plan.run(p, tmp_path, jobs=4)
    assert set(seconds) == {"a", "b", "c", "train1", "train2", "d"}
    assert all((tmp_path / "out" / f"{j['rule']}.txt").read_text() == "ok" for j in jobs)


def test_a_failing_parallel_job_stops_what_needs_it(tmp_path):
    jobs = [
        script_job("a", "raise ValueError('broken input')\n", tmp_path),
        script_job("b", NEEDS + WRITE, tmp_path, inputs=["out/a.txt"]),
        script_job("c", WRITE, tmp_path),
    ]
    p = {"version": plan.PLAN_VERSION, "cores": 2, "config": {}, "jobs": jobs}
    with pytest.raises(RuntimeError, match=r"job a \(a.py\) failed"):
        plan.run(p, tmp_path, jobs=2)
    assert not (tmp_path / "out/b.txt").exists()
