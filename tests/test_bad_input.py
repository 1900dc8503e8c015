"""Every bad input gets one clear line: the key, file or value at fault and what would be accepted; nothing that
existed before is touched. Each case runs the real path a command line takes (Hydra composition, validation, data
loading, resume, model building) in-process; a few go through the `dlrun` command in a subprocess."""

from __future__ import annotations

import errno
import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from dlrun.errors import DlrunError
from tests.conftest import CONF_DIR, run_dlrun

QUICK = ["trainer.max_epochs=1", "trainer.progress=false", "trainer.tensorboard=false", "report.plots=false"]


def dlrun_inprocess(argv: list[str], run_dir: Path):
    """What `dlrun ARGV` does, without a subprocess: check the command line, then run."""
    from omegaconf import OmegaConf

    from dlrun.preflight import check_command_line
    from dlrun.pipeline import run

    cfg = check_command_line(argv, str(CONF_DIR))
    return run(OmegaConf.to_object(cfg), run_dir, overrides=argv)


# ----------------------------------------------------------------------------------------------------------------------
# files the cases need, written in the real formats


def _csv(tmp: Path, text: str, name: str = "t.csv") -> str:
    path = tmp / name
    path.write_text(text)
    return str(path)


def _rows(n: int = 60, extra: str = "") -> str:
    rng = np.random.default_rng(0)
    lines = ["a,b,y" + ("," + extra.split("=")[0] if extra else "")]
    for i in range(n):
        row = f"{rng.normal():.3f},{rng.normal():.3f},{i % 2}"
        lines.append(row + ("," + extra.split("=")[1] if extra else ""))
    return "\n".join(lines) + "\n"


def _parquet_with_dates(tmp: Path) -> str:
    import pandas as pd

    path = tmp / "dates.parquet"
    pd.DataFrame({"when": pd.date_range("2020-01-01", periods=40), "a": np.arange(40.0),
                  "y": np.arange(40) % 2}).to_parquet(path)
    return str(path)


def _images(tmp: Path, classes=("cat", "dog"), per_class: int = 6, bad: str = "") -> str:
    from PIL import Image

    root = tmp / "images"
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(np.full((8, 8, 3), 40 * i, dtype=np.uint8)).save(root / c / f"{i}.png")
    if bad == "corrupt":
        (root / classes[0] / "broken.png").write_bytes(b"this is not a png")
    elif bad == "empty":
        (root / classes[0] / "empty.png").write_bytes(b"")
    elif bad == "16bit":
        Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16)).save(root / classes[0] / "deep.png")
    elif bad == "truncated":
        data = (root / classes[0] / "0.png").read_bytes()
        (root / classes[0] / "cut.png").write_bytes(data[: len(data) // 2])
    return str(root)


def _run_folder(tmp: Path) -> str:
    """A finished 1-epoch default run to resume from."""
    from tests.conftest import make_config
    from dlrun.pipeline import run

    folder = tmp / "earlier"
    run(make_config(trainer={"max_epochs": 1}, model=_mlp([16])), folder, overrides=["model.hidden=[16]"])
    return str(folder)


def _mlp(hidden):
    from dlrun.config import MLPConfig

    return MLPConfig(hidden=hidden)


def _checkpoint_file(tmp: Path, kind: str) -> str:
    path = tmp / f"{kind}.pt"
    if kind == "truncated":
        folder = Path(_run_folder(tmp))
        data = (folder / "checkpoints" / "last.pt").read_bytes()
        path.write_bytes(data[: len(data) // 3])
    elif kind == "random":
        path.write_bytes(os.urandom(2000))
    elif kind == "text":
        path.write_text("not a checkpoint\n")
    elif kind == "plain":
        torch.save({"weights": torch.zeros(3)}, path)
    elif kind == "pickled_object":
        torch.save({"model": {}, "payload": _Payload(str(tmp / "PWNED"))}, path)
    return str(path)


class _Payload:
    """Unpickling this would create a file: a weights_only load must refuse it before it runs."""

    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return (Path.touch, (Path(self.target),))


def _weights(tmp: Path, hidden) -> str:
    from dlrun import models
    from dlrun.config import RegConfig

    model = models.build(_mlp(hidden), (1, 8, 8), 10, RegConfig())
    path = tmp / "weights.pt"
    torch.save(model.state_dict(), path)
    return str(path)


# ----------------------------------------------------------------------------------------------------------------------
# the table: (id, argv builder taking tmp_path, a fragment of the one line the user sees)

CASES = [
    # unknown option, key, type
    ("unknown option", lambda t: ["model=vgx"], "model='vgx' is not an option, expected one of alexnet"),
    ("option typo hint", lambda t: ["dataset=cifar"], "Did you mean dataset=cifar10?"),
    ("unknown key", lambda t: ["reg.droput=0.5"], "unknown key 'reg.droput'. Did you mean reg.dropout?"),
    ("unknown nested key", lambda t: ["reg.augment.nois=0.1"], "Did you mean reg.augment.noise?"),
    ("key of another option", lambda t: ["model=vgg", "model.hidden=[8]"], "unknown key 'model.hidden'"),
    ("unknown group", lambda t: ["foo.bar=1"], "unknown group 'foo' in 'foo.bar'"),
    ("top-level key", lambda t: ["seed=3"], "Did you mean trainer.seed"),
    ("plus top-level key", lambda t: ["+seed=3"], "unknown key (added with +) 'seed'"),
    ("plus unknown key", lambda t: ["+reg.droput=0.5"], "unknown key (added with +) 'reg.droput'"),
    ("plus unknown split key", lambda t: ["+split.nfolds=5"], "unknown key (added with +) 'split.nfolds'"),
    ("not a number", lambda t: ["reg.dropout=abc"], "reg.dropout='abc': expected a number"),
    ("not an integer", lambda t: ["trainer.max_epochs=1.5"], "trainer.max_epochs='1.5': expected an integer"),
    ("not a bool", lambda t: ["early_stop.enabled=maybe"], "early_stop.enabled='maybe': expected true or false"),
    ("unparsable override", lambda t: ["reg.dropout=[1"], "cannot read the override 'reg.dropout=[1'"),
    ("sweep without -m", lambda t: ["reg.dropout=0,0.5"], "is a sweep: add -m"),
    ("bad value in a sweep", lambda t: ["-m", "reg.dropout=0.1,abc"], "reg.dropout='abc': expected a number"),
    ("unknown launcher", lambda t: ["hydra/launcher=nope"], "hydra/launcher='nope' is not an option"),
    # out-of-range values and rules across keys
    ("dropout range", lambda t: ["reg.dropout=1.5"], "reg.dropout must be in [0, 1), got 1.5"),
    ("learning rate", lambda t: ["optim.lr=0"], "optim.lr must be a finite number > 0"),
    ("batch size", lambda t: ["trainer.batch_size=0"], "trainer.batch_size must be >= 1"),
    ("split sum", lambda t: ["split.train=0.5"], "split ratios must sum to 1, got 0.9"),
    ("plus on an existing key", lambda t: ["+split.folds=5"], "+split.folds: the key exists already, the '+' adds "
     "new keys only; set it with split.folds=5"),
    ("plus on a chosen group", lambda t: ["+model=vgg"], "+model: model has an option already (the '+' is for a "
     "group with none yet); choose another with model=vgg"),
    ("threads word", lambda t: ["trainer.threads=many"], "trainer.threads='many' is not allowed, expected auto, a "
     "whole number >= 1, or null"),
    ("fail_on typo", lambda t: ["report.fail_on=[overfiting]"], "report.fail_on=['overfiting']: overfiting is not a "
     "verdict, expected a list of underfitting, overfitting, data_mismatch, distribution_shift"),
    ("limit fraction", lambda t: ["trainer.limit_train_batches=1.5"], "trainer.limit_train_batches=1.5 is not "
     "allowed, expected null (every batch), a whole number of batches >= 1, or a fraction in (0, 1]"),
    ("one fold", lambda t: ["split.folds=1"], "split.folds must be 0 (no k-fold) or at least 2, got 1"),
    ("fold out of range", lambda t: ["split.folds=3", "split.fold=3"], "split.fold must be in 0..2 (split.folds=3)"),
    ("fold without folds", lambda t: ["split.fold=2"], "split.fold=2 needs split.folds=K"),
    ("shift severity", lambda t: ["shift=gaussian_noise", "shift.severity=9"], "shift.severity must be in 1..5"),
    ("alpha", lambda t: ["report.alpha=2"], "report.alpha must be in (0, 1)"),
    ("mode max on a loss", lambda t: ["early_stop.mode=max"], "early_stop.mode=max with early_stop.monitor"),
    ("device name", lambda t: ["trainer.device=tpu"], "trainer.device='tpu' is not allowed"),
    ("fp16 on the cpu", lambda t: ["trainer.device=cpu", "trainer.precision=16"], "trainer.precision=16 needs a CUDA"),
    ("required key", lambda t: ["dataset=tabular"], "dataset.path, dataset.target are required here and not set"),
    # splits that cannot be made
    ("class without val/test samples",
     lambda t: ["dataset=tabular", f"dataset.path={_csv(t, _rows(60) + '0.1,0.2,7' + chr(10))}", "dataset.target=y"],
     "cannot split 61 samples"),
    ("too few samples", lambda t: ["dataset.max_samples=10"], "cannot split 10 samples"),
    # datasets
    ("missing dataset root", lambda t: ["dataset=mnist", f"dataset.root={t / 'nowhere'}"],
     "dataset=mnist: no data at dataset.root="),
    ("missing image folder", lambda t: ["dataset=image_folder", f"dataset.root={t / 'nowhere'}"], "is not a folder"),
    ("image folder with one class", lambda t: ["dataset=image_folder", f"dataset.root={_images(t, ('cat',))}"],
     "has 1 class folder"),
    ("corrupt image", lambda t: ["dataset=image_folder", f"dataset.root={_images(t, bad='corrupt')}"],
     "cannot read image"),
    ("empty image file", lambda t: ["dataset=image_folder", f"dataset.root={_images(t, bad='empty')}"],
     "cannot read image"),
    ("truncated image", lambda t: ["dataset=image_folder", f"dataset.root={_images(t, bad='truncated')}"],
     "cannot read image"),
    ("16-bit image", lambda t: ["dataset=image_folder", f"dataset.root={_images(t, bad='16bit')}"],
     "is in PIL mode I;16 (16-bit or floating point)"),
    ("missing csv", lambda t: ["dataset=tabular", f"dataset.path={t / 'none.csv'}", "dataset.target=y"],
     "does not exist"),
    ("empty csv", lambda t: ["dataset=tabular", f"dataset.path={_csv(t, '')}", "dataset.target=y"],
     "cannot be read as csv"),
    ("parquet named .csv", lambda t: ["dataset=tabular", f"dataset.path={_csv_from_parquet(t)}", "dataset.target=y"],
     "cannot be read as csv"),
    ("csv named .parquet", lambda t: ["dataset=tabular", f"dataset.path={_csv(t, _rows(), 'x.parquet')}",
                                      "dataset.target=y"], "cannot be read as parquet"),
    ("unknown suffix", lambda t: ["dataset=tabular", f"dataset.path={_csv(t, _rows(), 'x.txt')}", "dataset.target=y"],
     "expected .csv or .parquet"),
    ("no target column", lambda t: ["dataset=tabular", f"dataset.path={_csv(t, _rows())}", "dataset.target=label"],
     "dataset.target='label' is not a column of"),
    ("feature that cannot be encoded",
     lambda t: ["dataset=tabular", f"dataset.path={_parquet_with_dates(t)}", "dataset.target=y"],
     "are neither numbers nor categories"),
    ("missing feature values", lambda t: ["dataset=tabular", f"dataset.path={_csv(t, _rows() + ',0.1,1' + chr(10))}",
                                          "dataset.target=y"], "has missing feature values in 'a'"),
    ("infinite feature values", lambda t: ["dataset=tabular", f"dataset.path={_csv(t, _rows() + 'inf,0.1,1' + chr(10))}",
                                           "dataset.target=y"], "hold infinite values"),
    ("missing target values", lambda t: ["dataset=tabular", f"dataset.path={_csv(t, _rows() + '0.1,0.2,' + chr(10))}",
                                         "dataset.target=y"], "is missing in 1 rows"),
    ("text target for regression",
     lambda t: ["dataset=tabular", f"dataset.path={_csv(t, 'a,y' + chr(10) + chr(10).join(f'{i},c{i % 3}' for i in range(40)) + chr(10))}",
                "dataset.target=y", "dataset.task=regression"], "needs a numeric target"),
    # resume
    ("resume from nothing", lambda t: [f"trainer.resume={t / 'nothing'}"], "no checkpoint at"),
    ("resume a truncated file", lambda t: [f"trainer.resume={_checkpoint_file(t, 'truncated')}"],
     "is truncated, corrupt or not a file that torch.save wrote"),
    ("resume random bytes", lambda t: [f"trainer.resume={_checkpoint_file(t, 'random')}"],
     "is truncated, corrupt or not a file that torch.save wrote"),
    ("resume a text file", lambda t: [f"trainer.resume={_checkpoint_file(t, 'text')}"],
     "is truncated, corrupt or not a file that torch.save wrote"),
    ("resume plain data that is no checkpoint", lambda t: [f"trainer.resume={_checkpoint_file(t, 'plain')}"],
     "is not a dlrun checkpoint: it lacks model"),
    ("resume a pickled object", lambda t: [f"trainer.resume={_checkpoint_file(t, 'pickled_object')}"],
     "holds objects other than tensors and plain values"),
    ("resume another model", lambda t: [f"trainer.resume={_run_folder(t)}", "model.hidden=[32]"],
     "model.hidden=[16] (now [32])"),
    ("resume another dataset", lambda t: [f"trainer.resume={_run_folder(t)}", "model.hidden=[16]", "dataset=iris"],
     "dataset.name='digits' (now 'iris')"),
    # transfer learning
    ("weights of the wrong shape", lambda t: [f"model.weights={_weights(t, [16, 16])}", "model.hidden=[16,24]"],
     "features.3.weight has shape (16, 16) in the file but (24, 16) in this model"),
    ("weights file missing", lambda t: [f"model.weights={t / 'none.pt'}"], "no such file"),
    ("weights that are a pickled object", lambda t: [f"model.weights={_checkpoint_file(t, 'pickled_object')}"],
     "cannot be read: it holds objects other than tensors and plain values (refused by weights_only loading"),
    ("weights cut short", lambda t: [f"model.weights={_checkpoint_file(t, 'truncated')}"],
     "cannot be read: it is truncated, corrupt or not a file that torch.save wrote; give a state dict"),
    ("weights of the first layer's size only", lambda t: [f"model.weights={_weights(t, [16])}", "model.hidden=[24]"],
     "features.1.weight has shape (16, 64) in the file but (24, 64) in this model"),
    ("weights of another architecture", lambda t: [f"model.weights={_weights(t, [16])}", "model=lenet"],
     "shares no tensor with this model"),
    # a value whose unit the data decide
    ("target error of 30 on a classification task", lambda t: ["report.target_error=30"],
     "report.target_error=30.0: digits is a classification task, whose error is a fraction in [0, 1)"),
    # the output folder
    ("run folder that cannot be created", lambda t: [f"hydra.run.dir={_csv(t, 'x')}/run"], "cannot be created"),
]


def _csv_from_parquet(tmp: Path) -> str:
    import pandas as pd

    path = tmp / "actually_parquet.csv"
    pd.DataFrame({"a": np.arange(40.0), "y": np.arange(40) % 2}).to_parquet(path)
    return str(path)


def _fingerprint(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name, argv, message", CASES, ids=[c[0] for c in CASES])
def test_a_bad_input_gets_one_clear_line_and_touches_nothing(tmp_path, name, argv, message):
    from dlrun.folders import check_run_dir

    args = argv(tmp_path)
    before = _fingerprint(tmp_path)
    with pytest.raises(DlrunError) as err:
        cfg = None
        from dlrun.preflight import check_command_line

        cfg = check_command_line([*QUICK, *args], str(CONF_DIR))
        if cfg is not None:
            run_dir = next((Path(a.split("=", 1)[1]) for a in args if a.startswith("hydra.run.dir=")), None)
            if run_dir is not None:
                check_run_dir(cfg, args)
        dlrun_inprocess([*QUICK, *args], tmp_path / "run")
    text = str(err.value)
    assert message in text, text
    assert "\n" not in text.strip()  # one line
    assert len(CASES) >= 40
    # nothing that existed before was changed, and no run was started
    after = _fingerprint(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert not (tmp_path / "PWNED").exists()  # the pickled payload never ran


def test_no_gpu_means_a_clear_line_for_trainer_device_cuda(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(DlrunError, match="trainer.device=cuda but no CUDA GPU is visible"):
        dlrun_inprocess(["trainer.device=cuda", *QUICK], tmp_path / "run")


def test_a_full_disk_during_a_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    from dlrun.engine import checkpoint

    path = tmp_path / "last.pt"
    checkpoint.save(path, {"model": {"w": torch.ones(3)}, "epoch": 1})
    before = path.read_bytes()

    def full_disk(obj, f, *a, **k):
        f.write(b"\0" * 100)  # part of the file made it to disk, then the disk filled up
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(DlrunError, match=r"cannot write the checkpoint .*last\.pt: No space left on device.*intact"):
        checkpoint.save(path, {"model": {"w": torch.zeros(3)}, "epoch": 2})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind


def test_a_folder_that_holds_a_run_is_refused_unless_resumed_or_overwritten(tmp_path):
    from dlrun.folders import check_run_dir
    from dlrun.preflight import check_command_line

    folder = Path(_run_folder(tmp_path))
    before = _fingerprint(folder)
    argv = [f"hydra.run.dir={folder}", *QUICK]
    with pytest.raises(DlrunError, match=r"already holds a run \(checkpoints, report.json, metrics.csv\).*"
                                         r"trainer.resume=.*trainer.overwrite=true"):
        check_run_dir(check_command_line(argv, str(CONF_DIR)), argv)
    assert _fingerprint(folder) == before
    for extra in ([f"trainer.resume={folder}", "model.hidden=[16]"], ["trainer.overwrite=true"]):
        check_run_dir(check_command_line([*argv, *extra], str(CONF_DIR)), [*argv, *extra])  # accepted (same run)


@pytest.mark.slow
def test_overwrite_replaces_the_earlier_run_and_its_event_files(tmp_path):
    run_dir = tmp_path / "try1"
    args = [f"hydra.run.dir={run_dir}", "trainer.max_epochs=1", "trainer.progress=false", "model.hidden=[16]"]
    assert run_dlrun(args, tmp_path).returncode == 0
    again = run_dlrun(args, tmp_path)
    assert again.returncode == 2 and "already holds a run" in again.stderr and "Traceback" not in again.stderr
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
    replaced = run_dlrun([*args, "trainer.overwrite=true", "trainer.max_epochs=2"], tmp_path)
    assert replaced.returncode == 0, replaced.stderr
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1  # the old event file is gone, not stacked
    assert len((run_dir / "metrics.csv").read_text().splitlines()) == 3


def test_an_empty_run_or_sweep_folder_is_refused():
    from dlrun.folders import check_run_dir, check_sweep_dir
    from dlrun.preflight import check_command_line

    with pytest.raises(DlrunError, match="hydra.run.dir= is empty"):
        check_run_dir(check_command_line(["hydra.run.dir="], str(CONF_DIR)), ["hydra.run.dir="])
    with pytest.raises(DlrunError, match="hydra.sweep.dir= is empty"):
        check_sweep_dir(["-m", "hydra.sweep.dir=", "reg.dropout=0,0.5"])


def test_overwrite_clears_every_result_of_the_earlier_run_and_keeps_this_runs_own_files(tmp_path):
    from dlrun.pipeline import _clear_run

    results = ["checkpoints/last.pt", "plots/a.png", "hparams/x/events", "events.out.tfevents.1", "metrics.csv",
               "dynamics.csv", "predictions.csv", "report.json", "report.md", "report.html"]
    for name in [*results, ".hydra/config.yaml", "dlrun.log"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("old")
    _clear_run(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hydra", "dlrun.log"]  # Hydra wrote them for this run


# the same through the real command: exit 2, one line on stderr, no traceback
CLI_CASES = [
    (["reg.droput=0.5"], "Did you mean reg.dropout?"),
    (["+seed=42"], "Did you mean trainer.seed"),
    (["model=vgx"], "model='vgx' is not an option"),
    (["-m", "reg.dropout=0.1,abc"], "reg.dropout='abc': expected a number"),
    (["dataset=tabular"], "dataset.path, dataset.target are required"),
    (["trainer.resume=/nonexistent/run"], "no checkpoint at"),
    (["hydra.run.dir=/proc/version/run"], "cannot be created"),
]


@pytest.mark.parametrize("argv, message", CLI_CASES, ids=[" ".join(a) for a, _ in CLI_CASES])
def test_the_command_prints_one_line_and_exits_2(tmp_path, argv, message):
    done = run_dlrun([*argv, *QUICK], tmp_path)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("dlrun error:"), done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "outputs").exists() or not list((tmp_path / "outputs").rglob("report.json"))


def test_a_corrupt_checkpoint_through_the_command(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x80\x02junk")
    done = run_dlrun([f"trainer.resume={junk}", f"hydra.run.dir={tmp_path / 'run'}", *QUICK], tmp_path)
    assert done.returncode == 2 and "cannot read the checkpoint" in done.stderr
    assert "Traceback" not in done.stderr
