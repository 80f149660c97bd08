"""Training on real digits: best-epoch selection, checkpoint reload, determinism, divergence."""

import math
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import TinyPlugin
from torch import nn

from bench.core.errors import BenchError
from bench.data.splits import Normalizer
from bench.options.hparams import HParams
from bench.plugins.manager import get_registry
from bench.store import Store
from bench.train import checkpoints
from bench.train.loop import EpochStats, best_epoch, evaluate, train_trial
from bench.train.precision import resolve_speed

FP32 = {"precision": "fp32", "channels_last": False}  # what the trainer is told to train in (plans resolve 'auto')


def _train(digits, tmp_path, arch="cnn_dropout", variant=None, **hp):
    a = get_registry().get(arch)
    hp = HParams(**{"optimizer": "adam", "lr": 1e-3, "batch_size": 64, "epochs": 6, **hp})
    splits = digits.split(hp.val_ratio, hp.seed)
    torch.manual_seed(hp.seed)
    model = a.build(digits.input_shape, digits.num_classes, variant or a.variants()[0])
    hp = resolve_speed(hp, model, digits.input_shape, torch.device("cpu"))  # as a run's plan does
    result = train_trial(model, splits, Normalizer(digits), hp, tmp_path / "best.pt", digits.num_classes)
    return model, splits, result


def _epoch(epoch: int, val_loss: float, val_acc: float) -> EpochStats:
    return EpochStats(epoch, 1.0, 0.5, val_loss, val_acc, 1.0)


def test_best_epoch_is_the_lowest_validation_loss_or_the_highest_accuracy_ties_to_the_lower_loss():
    history = [_epoch(1, 0.9, 0.70), _epoch(2, 0.4, 0.80), _epoch(3, 0.5, 0.85), _epoch(4, 0.45, 0.85)]
    assert best_epoch(history, "val_loss").epoch == 2
    assert best_epoch(history, "val_acc").epoch == 4  # 0.85 twice: the lower validation loss
    assert best_epoch([], "val_loss") is None
    assert best_epoch([_epoch(1, 0.3, 0.9), _epoch(2, 0.3, 0.9)], "val_loss").epoch == 1  # the first of equals


def test_the_trainer_keeps_and_measures_the_epoch_its_selection_metric_chooses(digits, tmp_path):
    """A fast learning rate makes the validation loss turn up at the last epoch of five (the fourth is kept) while
    the accuracy still rises (the fifth is kept): the same with one torch thread and with two."""
    kept = {}
    for select in ("val_loss", "val_acc"):
        hp = HParams(optimizer="adam", lr=0.3, batch_size=64, epochs=5, seed=0, select=select, **FP32)
        torch.manual_seed(0)
        model = TinyPlugin.build(digits.input_shape, digits.num_classes, width=16)
        r = train_trial(model, digits.split(0.2, 0), Normalizer(digits), hp, tmp_path / f"{select}.pt", 10)
        best = best_epoch(r.history, select)
        assert r.best_epoch == best.epoch and (r.val_loss, r.val_acc) == (best.val_loss, best.val_acc)
        assert [e.best for e in r.history].count(True) >= 1 and r.history[r.best_epoch - 1].best
        _, meta = checkpoints.load(tmp_path / f"{select}.pt", sha256=r.checkpoint_sha256)
        assert meta["epoch"] == r.best_epoch
        kept[select] = r.best_epoch
    assert kept == {"val_loss": 4, "val_acc": 5}, "the test needs a run whose last epoch is not the lowest loss"


def test_restored_weights_are_the_best_epoch_and_the_file_reproduces_test_accuracy(digits, tmp_path):
    model, splits, r = _train(digits, tmp_path, epochs=5)
    assert r.status == "completed" and r.test_acc > 0.9
    state, meta = checkpoints.load(tmp_path / "best.pt", sha256=r.checkpoint_sha256)
    assert meta["epoch"] == r.best_epoch
    fresh = (
        get_registry().get("cnn_dropout").build(digits.input_shape, 10, get_registry().get("cnn_dropout").variants()[0])
    )
    fresh.load_state_dict(state)
    norm = Normalizer(digits)
    assert evaluate(fresh, splits.test, norm).acc == r.test_acc
    assert evaluate(fresh, splits.val, norm).loss == pytest.approx(r.val_loss, abs=1e-6)
    assert sum(map(sum, r.confusion)) == len(splits.test)
    assert sum(r.confusion[i][i] for i in range(10)) == round(r.test_acc * len(splits.test))


def test_same_seed_same_losses_and_another_seed_differs(digits, tmp_path):
    runs = [_train(digits, tmp_path / str(i), epochs=3, seed=s)[2] for i, s in enumerate([7, 7, 8])]
    first, again, other = ([(e.train_loss, e.val_loss) for e in r.history] for r in runs)
    assert first == again
    assert first != other


def test_exploding_learning_rate_is_diverged_without_a_checkpoint(digits, tmp_path):
    _, _, r = _train(digits, tmp_path, optimizer="sgd", lr=50.0, epochs=5)
    assert r.status == "diverged"
    assert len(r.history) == 1  # stopped at the first epoch, not trained on
    assert "training loss" in r.note
    assert r.test_acc is None and r.checkpoint_sha256 is None
    assert not (tmp_path / "best.pt").exists()
    assert not math.isfinite(r.history[0].train_loss) or r.history[0].train_loss > 23


def test_checkpoint_that_was_replaced_or_is_not_one_is_refused(tmp_path):
    sha = checkpoints.save(tmp_path / "a.pt", {"w": torch.ones(2)})
    checkpoints.save(tmp_path / "b.pt", {"w": torch.zeros(2)})
    with pytest.raises(BenchError, match="does not match its recorded SHA-256"):
        checkpoints.load(tmp_path / "b.pt", sha256=sha)
    (tmp_path / "c.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(BenchError, match="not a readable cnnbench checkpoint"):
        checkpoints.load(tmp_path / "c.pt")


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    torch.save({"state_dict": {}, "meta": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(BenchError, match="not a readable cnnbench checkpoint"):
        checkpoints.load(tmp_path / "evil.pt")


def test_store_refuses_foreign_and_newer_files(tmp_path):
    import sqlite3

    (tmp_path / "text.db").write_text("hello " * 200)
    with pytest.raises(BenchError, match="not a cnnbench store"):
        Store(tmp_path / "text.db")
    other = sqlite3.connect(tmp_path / "other.db")
    other.execute("CREATE TABLE t (x)")
    other.commit()
    other.close()
    with pytest.raises(BenchError, match="another SQLite database"):
        Store(tmp_path / "other.db")
    Store(tmp_path / "new.db").close()
    db = sqlite3.connect(tmp_path / "new.db")
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(BenchError, match="newer cnnbench"):
        Store(tmp_path / "new.db")


def test_an_older_store_is_migrated_in_place_and_keeps_its_runs(tmp_path):
    import sqlite3

    from bench.store import schema as store_module

    path = tmp_path / "v1.db"
    db = sqlite3.connect(path)
    db.executescript(store_module.SCHEMA)
    db.execute(f"PRAGMA application_id = {store_module.APPLICATION_ID}")
    db.execute("PRAGMA user_version = 1")
    db.execute(
        "INSERT INTO runs VALUES ('r1', '2026-01-01T00:00:00Z', NULL, 'completed', 'bench run', 'digits',"
        " '[1, 8, 8]', '[]', '{}', 0, '{}', '{}')"
    )
    db.commit()
    db.close()
    with Store(path) as store:
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == store_module.SCHEMA_VERSION
        assert store.run("r1")["command"] == "bench run"
        assert store.export_of(1) is None and store.latency_of(1) == []


# --- recipes: schedules, warm-up, label smoothing, Nesterov ----------------------------------------------


def test_recipes_are_recorded_with_the_learning_rate_of_every_epoch(invoke, tiny_plugin, store_path):
    result = invoke(
        "run",
        "--plugin",
        tiny_plugin,
        "--where",
        "width=8",
        "--epochs",
        "4",
        "--optimizer",
        "sgd",
        "--lr",
        "0.05",
        "--schedule",
        "constant,cosine,onecycle,step",
        "--warmup-epochs",
        "1",
        "--label-smoothing",
        "0.1",
        "--nesterov",
        "-q",
        "--no-benchmark",
    )
    assert result.exit_code == 0, result.output
    rows = {r["hparams"]["schedule"]: r for r in invoke.json("report")}
    assert set(rows) == {"constant", "cosine", "onecycle", "step"}
    with Store(store_path) as store:
        lrs = {
            k: [h["lr"] for h in store.history(store.trials(r["run"])[r["trial"] - 1]["id"])] for k, r in rows.items()
        }
        elapsed = [h["elapsed_s"] for h in store.history(store.trials(rows["cosine"]["run"])[0]["id"])]
    for r in rows.values():
        hp = r["hparams"]
        assert (hp["warmup_epochs"], hp["label_smoothing"], hp["nesterov"]) == (1.0, 0.1, True)
        assert r["status"] == "completed"
    steps = 18  # 1150 training images in batches of 64
    # Warm-up: the first epoch starts at lr / steps; after it, each schedule has its own shape.
    assert lrs["constant"] == pytest.approx([0.05 / steps, 0.05, 0.05, 0.05])
    assert lrs["cosine"][0] == pytest.approx(0.05 / steps) and lrs["cosine"][1] == pytest.approx(0.05)
    assert lrs["cosine"][1] > lrs["cosine"][2] > lrs["cosine"][3] > 0
    assert lrs["step"] == pytest.approx([0.05 / steps, 0.05, 0.05, 0.005])  # x0.1 at half of the 54 steps left
    assert lrs["onecycle"][0] == pytest.approx(0.05 / 25) and max(lrs["onecycle"]) <= 0.05  # torch's div_factor
    assert all(b > a for a, b in zip(elapsed, elapsed[1:], strict=False)) and elapsed[0] > 0


def test_label_smoothing_changes_the_training_loss_not_the_validation_loss_definition(digits):
    splits = digits.split(0.2, 0)
    out = {}
    for smoothing in (0.0, 0.3):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
        hp = HParams(epochs=1, lr=1e-9, optimizer="sgd", label_smoothing=smoothing, **FP32)  # (almost) no learning
        out[smoothing] = train_trial(model, splits, Normalizer(digits), hp, Path(tempfile.mkdtemp()) / "b.pt", 10)
    plain, smoothed = out[0.0].history[0], out[0.3].history[0]
    assert smoothed.train_loss != pytest.approx(plain.train_loss, rel=1e-3)
    assert smoothed.val_loss == pytest.approx(plain.val_loss, rel=1e-6)  # plain cross-entropy either way


@pytest.mark.parametrize("lookahead", [False, True])
def test_an_unfinished_trial_continues_from_its_saved_state_with_the_same_losses(digits, tmp_path, lookahead):
    """In-process: a state saved after epoch 2 of 4 and continued gives the uninterrupted losses (with lookahead,
    its average of the weights and batch-norm statistics is part of that state)."""
    splits = digits.split(0.2, 0)
    hp = HParams(
        epochs=4, lr=0.05, optimizer="sgd", schedule="cosine", augment="flip,crop", seed=3, lookahead=lookahead, **FP32
    )

    def fresh():
        torch.manual_seed(hp.seed)
        return nn.Sequential(
            nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 10)
        )

    whole = train_trial(fresh(), splits, Normalizer(digits), hp, tmp_path / "a.pt", 10, state_path=tmp_path / "a.st")
    assert not (tmp_path / "a.st").exists()  # gone once the trial ended

    class Stop(Exception):
        pass

    def stop_after_2(stats):
        if stats.epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        train_trial(
            fresh(),
            splits,
            Normalizer(digits),
            hp,
            tmp_path / "b.pt",
            10,
            on_epoch=stop_after_2,
            state_path=tmp_path / "b.st",
        )
    assert (tmp_path / "b.st").is_file()
    seen = []
    resumed = train_trial(
        fresh(),
        splits,
        Normalizer(digits),
        hp,
        tmp_path / "b.pt",
        10,
        on_epoch=lambda s: seen.append(s.epoch),
        state_path=tmp_path / "b.st",
    )
    assert seen == [3, 4]  # epochs 1-2 were not trained again
    key = lambda r: [(e.train_loss, e.val_loss, e.lr) for e in r.history]  # noqa: E731
    assert key(resumed) == key(whole)
    assert (resumed.test_acc, resumed.best_epoch) == (whole.test_acc, whole.best_epoch)
    # A state for other hyperparameters is not continued: that trial starts afresh.
    other = replace(hp, lr=0.01)
    with pytest.raises(Stop):
        train_trial(
            fresh(),
            splits,
            Normalizer(digits),
            hp,
            tmp_path / "c.pt",
            10,
            on_epoch=stop_after_2,
            state_path=tmp_path / "c.st",
        )
    seen.clear()
    train_trial(
        fresh(),
        splits,
        Normalizer(digits),
        other,
        tmp_path / "c.pt",
        10,
        on_epoch=lambda s: seen.append(s.epoch),
        state_path=tmp_path / "c.st",
    )
    assert seen == [1, 2, 3, 4]


def test_lookahead_pulls_the_weights_to_their_average_every_5_steps_and_ends_on_it():
    from bench.train.optim import LOOKAHEAD_DECAY, Lookahead

    model = nn.Sequential(nn.Linear(1, 1, bias=False), nn.BatchNorm1d(1))
    weight = model[0].weight
    with torch.no_grad():
        weight.fill_(0.0)
    lookahead, average, total = Lookahead(model, total_steps=12), 0.0, 12
    for t in range(1, total + 1):
        with torch.no_grad():
            weight.add_(1.0)  # an optimizer step
        before = weight.item()
        lookahead.step(t)
        if t == total:
            assert weight.item() == pytest.approx(average)  # the average of step 10, not step 12's 12.0
        elif t % 5:
            assert weight.item() == before  # left alone between pulls
        else:
            decay = LOOKAHEAD_DECAY * (t / total) ** 3
            average += (1 - decay) * (before - average)
            assert weight.item() == pytest.approx(average)  # set to the average, which moved towards it
    assert torch.equal(model[1].running_mean, lookahead.state_dict()["1.running_mean"])  # buffers too


def test_lookahead_changes_the_training_it_is_asked_for(digits, tmp_path):
    variant = {"widths": (32, 64, 128), "stem": 32, "geometry": "airbench", "tta": False, "tricks": "airbench"}
    hp = {"optimizer": "sgd", "lr": 0.2, "momentum": 0.85, "nesterov": True, "schedule": "onecycle", "epochs": 3}
    _, _, plain = _train(digits, tmp_path, arch="fast_cnn", variant=variant, **hp)
    _, _, pulled = _train(digits, tmp_path, arch="fast_cnn", variant=variant, lookahead=True, **hp)
    assert plain.status == pulled.status == "completed" and pulled.test_acc > 0.8
    assert [e.train_loss for e in plain.history] != [e.train_loss for e in pulled.history]


def test_the_fast_recipe_runs_from_its_config_file(invoke):
    config = Path(__file__).resolve().parents[1] / "configs" / "cifar10-fast.toml"
    result = invoke("run", "--config", config, "--dataset", "digits", "--epochs", "5", "-q", "--no-benchmark")
    assert result.exit_code == 0, result.output
    (row,) = invoke.json("report")
    hp = row["hparams"]
    assert row["architecture"] == "fast_cnn" and row["status"] == "completed"
    assert (hp["schedule"], hp["warmup_epochs"], hp["label_smoothing"], hp["nesterov"], hp["batch_size"]) == (
        "onecycle",
        2.0,
        0.2,
        True,
        512,
    )
    assert row["variant"]["tricks"] == "airbench"
    assert row["epochs_run"] == 5 and math.isfinite(row["val_loss"])


def test_a_data_initialized_stem_is_fitted_to_the_training_images_then_fixed(digits, tmp_path):
    # airbench's devices: the whitening stem is fitted before the first step (to the first training images, as
    # the model sees them) and never trained; batch-norm scales stay 1; batch-norm biases train at 64x the rate.
    from bench.models.layers import DATA_INIT_IMAGES, PatchWhitening

    variant = {"widths": (32, 64, 128), "stem": 32, "geometry": "airbench", "tta": False, "tricks": "airbench"}
    hp = {"optimizer": "sgd", "lr": 0.2, "momentum": 0.85, "nesterov": True, "schedule": "onecycle", "epochs": 3}
    model, splits, result = _train(digits, tmp_path, arch="fast_cnn", variant=variant, **hp)
    assert result.status == "completed" and result.test_acc > 0.8
    expected = PatchWhitening(1, 2)
    expected.init_from_data(Normalizer(digits)(splits.train.images[:DATA_INIT_IMAGES]))
    stem = model[0]
    assert torch.equal(stem.weight, expected.weight)  # fitted, then not moved by 3 epochs of SGD
    assert stem.bias.abs().max() > 0  # its bias trains
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(torch.equal(m.weight, torch.ones_like(m.weight)) for m in norms)
    assert all(m.bias.abs().max() > 0 for m in norms)


def test_parameters_with_an_lr_scale_get_their_own_rate_through_the_whole_schedule():
    from bench.train.optim import make_optimizer, make_scheduler

    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    model[1].bias.lr_scale = 64
    hp = HParams(optimizer="sgd", lr=0.1, weight_decay=1e-3, schedule="onecycle", warmup_epochs=1, epochs=4)
    optimizer = make_optimizer(model, hp)
    plain, scaled = optimizer.param_groups
    assert [len(plain["params"]), len(scaled["params"])] == [3, 1]
    assert scaled["weight_decay"] * 64 == pytest.approx(plain["weight_decay"])  # the same decay per step
    scheduler = make_scheduler(optimizer, hp, steps=10)
    for _ in range(40):
        assert scaled["lr"] == pytest.approx(64 * plain["lr"])
        optimizer.step()
        scheduler.step()


def test_a_one_cycle_fits_any_number_of_steps():
    """fast_cnn's default schedule with --epochs 1 on a small set: OneCycleLR divided by zero when its rising phase
    was under 2 steps."""
    from bench.train.optim import make_optimizer, make_scheduler

    for steps, epochs, warmup in [(1, 1, 0.2), (2, 1, 0.2), (3, 1, 0.214), (3, 2, 0.5), (10, 1, 0.0), (2, 2, 1.0)]:
        hp = HParams(optimizer="sgd", lr=0.1, schedule="onecycle", warmup_epochs=warmup, epochs=epochs)
        optimizer = make_optimizer(nn.Linear(2, 2), hp)
        scheduler = make_scheduler(optimizer, hp, steps=steps)
        for _ in range(epochs * steps):
            optimizer.step()
            scheduler.step()
            assert 0 <= optimizer.param_groups[0]["lr"] <= 0.1 + 1e-12


def test_altflip_shows_every_image_mirrored_in_exactly_one_of_two_epochs(digits, tmp_path, monkeypatch):
    import bench.train.loop

    seen: list[torch.Tensor] = []
    real = bench.train.loop.augment

    def spy(images, names, generator, flip=None):
        seen.append(flip.clone())
        return real(images, names, generator, flip)

    monkeypatch.setattr(bench.train.loop, "augment", spy)
    hp = {"augment": "altflip", "batch_size": 4096, "epochs": 3}  # one batch per epoch: its mask is the epoch's
    _, splits, result = _train(digits, tmp_path, **hp)
    assert result.status == "completed" and len(seen) == 3
    n = len(splits.train.labels)
    by_image = [torch.empty(n, dtype=torch.bool) for _ in seen]
    generator = torch.Generator().manual_seed(0)  # the trainer's shuffle: seed 0, one permutation per epoch
    for mask, out in zip(seen, by_image, strict=True):
        out[torch.randperm(n, generator=generator)] = mask
    assert 0.4 < by_image[0].float().mean() < 0.6  # half the images mirrored in epoch 1
    assert torch.equal(by_image[1], ~by_image[0]) and torch.equal(by_image[2], by_image[0])
