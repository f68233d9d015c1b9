"""The training loop on CPU: it must clearly beat chance on the demo cues, and be seeded."""

import numpy as np
import pandas as pd
import pytest
import torch

from maskprivacy.core.labels import parse_name
from maskprivacy.model import checkpoints, feeders, images, loop, network, predict, tasks
from maskprivacy.model.config import TrainConfig
from maskprivacy.stages.entry import Compute


@pytest.fixture(scope="module")
def demo_tensors(tmp_path_factory):
    from maskprivacy.datasets import demo

    folder = tmp_path_factory.mktemp("train_demo")
    paths = demo.generate(folder, n_images=240, seed=11, progress=False)
    rows = []
    for p in paths:
        lab = parse_name(p.name)
        rows.append({"file": p.name, "age": lab.age, "sex": lab.sex, "race": lab.race})
    table = pd.DataFrame(rows)
    x = images.load_images(folder, table["file"].tolist(), 48, workers=2, progress=False)
    return x, images.labels_tensor(table)


CPU = Compute(device="cpu", compile=False, eval_batch_size=64)


def small_config(**kw):
    cfg = dict(
        arch="resnet18",
        epochs=10,
        batch_size=32,
        lr=3e-3,
        image_size=48,
        seed=0,
        warmup_epochs=1,
    )
    cfg.update(kw)
    return TrainConfig.from_params(cfg)


def test_training_clearly_beats_chance(demo_tensors):
    x, y = demo_tensors
    hist = loop.train_models(
        small_config(), CPU, x[:200], y[:200], x[200:], y[200:], threads=2, progress=False
    ).history
    last = hist.iloc[-1]
    # chance: sex 0.5, race 0.2; always guessing the mean age gives an MAE of about 22 years
    assert last["val_sex_acc"] >= 0.85, hist
    assert last["val_race_acc"] >= 0.6, hist
    assert last["val_age_mae"] < 17, hist
    assert hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[0]


def test_seeded_runs_repeat(demo_tensors):
    x, y = demo_tensors
    cfg = small_config(epochs=1)
    data = x[:64], y[:64], x[64:96], y[64:96]
    h1 = loop.train_models(cfg, CPU, *data, threads=2, progress=False).history
    h2 = loop.train_models(cfg, CPU, *data, threads=2, progress=False).history
    np.testing.assert_allclose(h1["train_loss"], h2["train_loss"], rtol=1e-5)


def test_augment_is_seeded_and_keeps_shape():
    x = torch.randint(0, 255, (4, 3, 40, 40), dtype=torch.uint8)
    aug = lambda: images.GPUAugment(TrainConfig().augment, 32, torch.device("cpu"), 7)  # noqa: E731
    a, b = aug()(x), aug()(x)
    assert a.shape == (4, 3, 32, 32)
    torch.testing.assert_close(a, b)
    ev = aug()(x, train=False)
    assert ev.shape == (4, 3, 32, 32)


def test_checkpoint_round_trip(tmp_path):
    cfg = small_config()
    model = network.build_model("resnet18")
    checkpoints.save_checkpoint(model, cfg, 3, tmp_path / "m.pt")
    loaded, payload = checkpoints.load_checkpoint(tmp_path / "m.pt")
    assert payload["epoch"] == 3 and payload["arch"] == "resnet18"
    # the last layer is the one linear layer itself (no wrapper): fc.weight, fc.bias
    assert type(model.fc) is torch.nn.Linear and model.fc.out_features == 8
    assert {"fc.weight", "fc.bias"} <= set(payload["state_dicts"]["multitask"])
    assert list(loaded) == ["multitask"]
    x = torch.randn(2, 3, 48, 48)
    model.eval()
    torch.testing.assert_close(
        model(x), loaded["multitask"](x.contiguous(memory_format=torch.channels_last))
    )


def test_paper_protocol_trains_four_single_task_models(demo_tensors, tmp_path):
    x, y = demo_tensors
    cfg = small_config(epochs=2, protocol="paper")
    r = loop.train_models(
        cfg,
        CPU,
        x[:64],
        y[:64],
        x[64:96],
        y[64:96],
        checkpoint=tmp_path / "p.pt",
        threads=2,
        progress=False,
    )
    models, hist = r.models, r.history
    assert list(models) == ["sex", "race", "age", "age_group"]
    assert [m.fc.out_features for m in models.values()] == [2, 5, 1, 7]
    assert {"train_loss_sex", "train_loss_age_group", "val_age_group_acc", "val_age_mae"} <= set(
        hist
    )
    loaded, payload = checkpoints.load_checkpoint(tmp_path / "p.pt")
    assert payload["protocol"] == "paper" and list(loaded) == list(models)
    aug = images.GPUAugment({}, 48, torch.device("cpu"), 0)
    pred = predict.predict(loaded, x[96:100], aug, torch.device("cpu"), 8)
    assert pred["sex_prob"].shape == (4, 2) and pred["age_group_prob"].shape == (4, 7)
    assert pred["age"].shape == (4,)


@pytest.mark.parametrize("protocol", ["multitask", "paper"])
def test_flip_tta_is_the_mean_over_a_face_and_its_mirror(protocol):
    """evaluate.tta: flip averages the outputs on each face and on its mirror image, so the
    prediction no longer depends on which way a face looks; an unknown tta is refused."""
    torch.manual_seed(0)
    tasks_ = dict(tasks.PROTOCOLS[protocol])
    models = {t: network.build_model("resnet18", "", n).eval() for t, n in tasks_.items()}
    x = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    aug = images.GPUAugment({}, 32, torch.device("cpu"), 0)
    cpu = torch.device("cpu")
    plain = predict.predict(models, x, aug, cpu, 4, "fp32")
    mirror = predict.predict(models, x.flip(3), aug, cpu, 4, "fp32")
    flip = predict.predict(models, x, aug, cpu, 4, "fp32", tta="flip")
    flip_of_mirror = predict.predict(models, x.flip(3), aug, cpu, 4, "fp32", tta="flip")
    assert set(flip) == set(plain)
    assert not np.allclose(plain["age"], mirror["age"])  # the network itself is not symmetric
    for k in plain:
        np.testing.assert_allclose(flip[k], (plain[k] + mirror[k]) / 2, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(flip[k], flip_of_mirror[k], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(flip["sex_prob"].sum(1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="tta must be one of none, flip"):
        predict.predict(models, x, aug, cpu, 4, "fp32", tta="rotate")


def test_age_groups_match_the_paper_buckets():
    from maskprivacy.core.labels import age_bucket

    ages = torch.arange(0, 117, dtype=torch.float32)
    assert tasks.age_group(ages).tolist() == [age_bucket(int(a)) for a in ages]


def test_missing_weights_file_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="train.weights"):
        network.build_model("resnet50", str(tmp_path / "resnet50.pth"))


def test_local_weights_are_loaded(tmp_path):
    import torchvision

    ref = torchvision.models.resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    model = network.build_model("resnet18", str(tmp_path / "r18.pth"))
    torch.testing.assert_close(model.conv1.weight, ref.conv1.weight)


def test_pinned_feeder_gives_the_same_batches_as_device_feeder():
    x = torch.arange(10 * 3 * 2 * 2, dtype=torch.uint8).view(10, 3, 2, 2)
    y = torch.arange(30, dtype=torch.float32).view(10, 3)
    order = torch.randperm(10, generator=torch.Generator().manual_seed(0))
    dev = torch.device("cpu")
    a = list(feeders.DeviceFeeder(x, y, dev).batches(order, 4, 2))
    b = list(feeders.PinnedFeeder(x, y, dev).batches(order, 4, 2))
    assert len(a) == len(b) == 2
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        torch.testing.assert_close(xa, xb)
        torch.testing.assert_close(ya, yb)
    # the batches follow the shuffled order, the ragged tail (2 images) is dropped
    torch.testing.assert_close(a[0][0], x[order[:4]])


def test_placement_choice_and_errors():
    x, y = torch.zeros(4, 3, 2, 2, dtype=torch.uint8), torch.zeros(4, 3)
    cpu = torch.device("cpu")
    assert isinstance(feeders.make_feeder(x, y, cpu, "auto"), feeders.DeviceFeeder)
    assert isinstance(feeders.make_feeder(x, y, cpu, "pinned"), feeders.PinnedFeeder)
    with pytest.raises(ValueError, match="data_placement"):
        feeders.make_feeder(x, y, cpu, "disk")


def test_fit_through_the_pinned_path(demo_tensors):
    x, y = demo_tensors
    cfg = small_config(epochs=1)
    pinned = Compute(device="cpu", compile=False, eval_batch_size=64, data_placement="pinned")
    data = x[:64], y[:64], x[64:96], y[64:96]
    hist = loop.train_models(cfg, pinned, *data, threads=2, progress=False).history
    assert len(hist) == 1 and np.isfinite(hist["train_loss"]).all()


# ---------------------------------------------------------------- resume and model selection


class Killed(Exception):
    """Stands in for a SIGKILL in-process (the Snakemake test sends a real one)."""


def _tiny(x, y):
    return x[:48], y[:48], x[48:64], y[48:64]


def _states_equal(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a) and a.keys() == b.keys()


def test_resume_after_a_kill_repeats_an_uninterrupted_run(demo_tensors, tmp_path, monkeypatch):
    cfg = small_config(epochs=3, image_size=32, batch_size=16)
    data = _tiny(*demo_tensors)
    whole = loop.train_models(
        cfg, CPU, *data, tmp_path / "a.pt", threads=2, progress=False, key="k"
    )

    real_write = loop.write_checkpoint

    def dying_write(payload, path):
        real_write(payload, path)
        if payload["epoch"] == 2:
            raise Killed  # killed after the checkpoint of epoch 2 was written

    monkeypatch.setattr(loop, "write_checkpoint", dying_write)
    with pytest.raises(Killed):
        loop.train_models(cfg, CPU, *data, tmp_path / "b.pt", threads=2, progress=False, key="k")
    monkeypatch.setattr(loop, "write_checkpoint", real_write)
    again = loop.train_models(
        cfg, CPU, *data, tmp_path / "b.pt", threads=2, progress=False, key="k"
    )
    assert again.resumed_after == 2 and whole.resumed_after == 0
    pd.testing.assert_frame_equal(
        whole.history.drop(columns=["seconds", "images_per_s"]),
        again.history.drop(columns=["seconds", "images_per_s"]),
    )
    assert _states_equal(
        whole.models["multitask"].state_dict(), again.models["multitask"].state_dict()
    )


def test_a_checkpoint_of_other_params_is_ignored(demo_tensors, tmp_path, caplog):
    cfg = small_config(epochs=1, image_size=32, batch_size=16)
    data = _tiny(*demo_tensors)
    ckpt = tmp_path / "c.pt"
    loop.train_models(cfg, CPU, *data, ckpt, threads=2, progress=False, key="old")
    with caplog.at_level("INFO"):
        r = loop.train_models(cfg, CPU, *data, ckpt, threads=2, progress=False, key="new")
    assert r.resumed_after == 0 and len(r.history) == 1
    assert "other train params or inputs" in caplog.text
    with caplog.at_level("INFO"):
        r = loop.train_models(cfg, CPU, *data, ckpt, threads=2, progress=False, key="new")
    assert r.resumed_after == 1 and "resuming after epoch 1 of 1" in caplog.text


@pytest.mark.parametrize("protocol", ["multitask", "paper"])
def test_select_best_val_keeps_each_networks_best_epoch(demo_tensors, protocol):
    epochs = 3 if protocol == "multitask" else 2  # the paper's four networks cost four times
    cfg = small_config(
        epochs=epochs, image_size=32, batch_size=16, select="best_val", protocol=protocol
    )
    x, y, xv, yv = _tiny(*demo_tensors)
    r = loop.train_models(cfg, CPU, x, y, xv, yv, threads=2, progress=False)
    hist = r.history
    assert len(set(hist["val_loss"])) > 1  # the epochs differ, so the choice matters
    # the models given back are the kept epochs' weights: they score what the history says
    aug = images.GPUAugment({}, 32, torch.device("cpu"), 0)
    pred = predict.predict(r.models, xv, aug, torch.device("cpu"), 64, "fp32", yv, cfg)
    now = {"val_loss": float(pred["loss"])}
    now.update({f"val_{k}": v for k, v in predict.prediction_metrics(pred, yv.numpy()).items()})
    for task, k in r.kept.items():
        metric, lower = loop.SELECT_ON[task]
        best = hist[metric].idxmin() if lower else hist[metric].idxmax()
        assert k["epoch"] == int(hist.loc[best, "epoch"]) and k["on"] == metric
        assert k["score"] == pytest.approx(hist.loc[best, metric])
        if metric != "val_loss" or protocol == "multitask":
            assert now[metric] == pytest.approx(k["score"], rel=1e-5), (task, now, r.kept)
    summary = loop.selection_summary(r.kept, "best_val")
    assert {"select", "kept_epoch", "kept_on", "kept_score"} <= set(summary)
    assert summary["select"] == "best_val" and 1 <= summary["kept_epoch"] <= epochs
    if protocol == "multitask":
        assert summary["kept_on"] == "val_loss"
    else:
        assert summary["kept_on"] == "per_attribute" and set(summary["kept_by_task"]) == {
            "sex",
            "race",
            "age",
            "age_group",
        }


# ---------------------------------------------------------------- the train and evaluate stages


def test_train_and_evaluate_stages_compute_as_compute_says(tmp_path):
    """The stages through the stage contract: train writes model, history and report and removes
    its checkpoint; evaluate scores that model. Device, precision, compile, batch size for
    evaluation and data placement come from ``config.compute`` only: train params naming a
    device that does not exist here change nothing."""
    import json

    from maskprivacy.core.io import read_table, write_table
    from maskprivacy.datasets import demo
    from maskprivacy.stages import evaluate, train
    from maskprivacy.stages.entry import Files, StageConfig, run_stage

    paths = demo.generate(tmp_path / "images", n_images=40, seed=3, progress=False)
    rows = [{"file": p.name, **vars(parse_name(p.name))} for p in paths]
    table = pd.DataFrame(rows).assign(split=["train"] * 24 + ["val"] * 8 + ["test"] * 8)
    table["age_bucket"] = [parse_name(f).age_bucket for f in table["file"]]
    write_table(tmp_path / "split.csv", table)
    (tmp_path / "download.json").write_text(json.dumps({"source": "demo", "n_inputs": 40}))
    compute = Compute(threads=2, device="cpu", compile=False, eval_batch_size=16)
    params = dict(arch="resnet18", epochs=1, batch_size=8, image_size=32, seeds=[0])
    images = [str(tmp_path / "images")]
    out = tmp_path / "train"
    run_stage(
        "train",
        train.run,
        StageConfig(
            params={**params, "device": "cuda:9", "precision": "bf16", "data_placement": "disk"},
            wildcards={"dataset": "unmasked", "seed": "0"},
            compute=compute,
        ),
        Files(split=str(tmp_path / "split.csv"), images=images),
        Files(model=str(out / "model.pt"), history=str(out / "h.csv"), report=str(out / "r.json")),
    )
    report = json.loads((out / "r.json").read_text())
    assert report["n_train"] == 24 and report["n_val"] == 8 and report["dataset"] == "unmasked"
    assert report["seed"] == 0  # a number, as before the stage contract (wildcards are strings)
    assert len(read_table(out / "h.csv")) == 1 and not (out / "checkpoint.pt").exists()

    def evaluate_into(ev, **params):
        return run_stage(
            "evaluate",
            evaluate.run,
            StageConfig(
                params={"bootstrap": 20, "seed": 0, **params},
                extra={"condition": {"name": "unmasked", "train": "unmasked", "test": "unmasked"}},
                wildcards={"condition": "unmasked", "seed": "0"},
                compute=compute,
            ),
            Files(
                split=str(tmp_path / "split.csv"),
                model=str(out / "model.pt"),
                images=images,
                download_report=str(tmp_path / "download.json"),
            ),
            Files(
                predictions=str(ev / "predictions.csv"),
                metrics=str(ev / "metrics.json"),
                plots=str(ev / "plots"),
            ),
        )

    ev = tmp_path / "evaluate"
    summary = evaluate_into(ev)
    assert summary["n_test"] == 8 and set(summary) >= {"sex", "race", "age"}
    assert len(read_table(ev / "predictions.csv")) == 8
    assert json.loads((ev / "metrics.json").read_text())["data_source"] == "demo"
    assert (ev / "plots" / "age_unmasked_seed0.png").exists()
    # evaluate.tta: flip reaches the predictions (each the mean over the face and its mirror)
    ev_flip = tmp_path / "evaluate_flip"
    evaluate_into(ev_flip, tta="flip")
    plain_age = read_table(ev / "predictions.csv")["age_pred"].to_numpy()
    flip_age = read_table(ev_flip / "predictions.csv")["age_pred"].to_numpy()
    assert len(flip_age) == 8 and not np.allclose(plain_age, flip_age)
