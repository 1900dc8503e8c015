"""dlrun/loggers.py: TensorBoard HParams sessions and MLflow runs, read back with each tool's own reader.

Most tests call the module directly with hand-made epoch rows and a hand-made report; MLflow writes to a sqlite store
in tmp_path (the working directory too: MLflow puts artifacts under ./mlruns). The last test runs a real two-job sweep
on joblib, jobs in their own processes, through dlrun's command line.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from dlrun import loggers
from dlrun.config import LoggerConfig, MLflowConfig, TensorBoardConfig
from dlrun.errors import DlrunError
from tests.conftest import ROOT, make_config, run_dlrun

OVERRIDES = ["optim.lr=0.01", "model.hidden=[64]", "trainer.deterministic=true", "trainer.resume=auto",
             "hydra.run.dir=/some/where"]
ROWS = [{"epoch": e, "train_loss": 1.0 / e, "train_error": 0.5 / e, "val_loss": 1.1 / e, "val_error": 0.6 / e,
         "lr": 0.01, "epoch_seconds": 0.1} for e in (1, 2, 3)]


def _config(**trainer) -> dict:
    return asdict(make_config(optim={"lr": 0.01}, trainer={"tensorboard": True, **trainer}))


def _report(run_dir: Path, interrupted: bool = False, epochs: int = 3) -> dict:
    """A report as pipeline._report returns it, with its files written in run_dir."""
    report = {
        "run": {"overrides": OVERRIDES, "epochs_run": epochs, "best_epoch": epochs, "wall_seconds": 1.5,
                "stop_reason": "interrupted" if interrupted else "max_epochs", "interrupted": interrupted,
                "objective": {"monitor": "val_loss", "mode": "min", "value": 0.37}},
        "metrics": {"train": {"error": 0.05, "loss": 0.2}, "val": {"error": 0.15, "loss": 0.37},
                    "test": {"error": 0.17, "loss": 0.41}},
        "diagnosis": {"underfitting": {"detected": False, "severity": "none"},
                      "overfitting": {"detected": True, "severity": "mild"},
                      "data_mismatch": {"detected": False, "severity": "none"},
                      "distribution_shift": {"detected": True, "severity": "severe"}},
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "report.json").write_text(json.dumps(report))
    (run_dir / "report.html").write_text("<html></html>")
    (run_dir / "report.md").write_text("# report\n")
    (run_dir / "plots").mkdir(exist_ok=True)
    (run_dir / "plots" / "learning_curves.png").write_bytes(b"\x89PNG")
    return report


def _run(logger_cfg, run_dir: Path, config: dict, rows=ROWS, sweep_dir=None, overrides=OVERRIDES, **report) -> None:
    tracking = loggers.start(logger_cfg, run_dir, config, overrides, sweep_dir)
    for row in rows:
        tracking.on_epoch(row, 3)
    tracking.finish(_report(run_dir, epochs=len(rows), **report), run_dir)


# ----------------------------------------------------------------------------------------------------------------------
# names, and what is never imported


def test_names_say_what_was_run_without_where_or_how():
    assert loggers.run_name(OVERRIDES) == "optim.lr=0.01 model.hidden=[64] trainer.deterministic=true"
    assert loggers.run_name(["trainer.progress=false", "hydra/launcher=joblib"]) == "defaults"
    assert loggers.folder_name(["dataset.root=/data/my set", "reg.dropout=0.5"]) == \
        "dataset.root=_data_my_set,reg.dropout=0.5"
    long_a, long_b = [f"dataset.path={'x' * 200}a.csv"], [f"dataset.path={'x' * 200}b.csv"]
    assert len(loggers.folder_name(long_a)) == 120 and loggers.folder_name(long_a) != loggers.folder_name(long_b)
    assert loggers.hparams_of(_config(), OVERRIDES) == {"model": "mlp", "dataset": "digits", "optim.lr": 0.01,
                                                        "model.hidden": "[64]", "trainer.deterministic": True}


def test_without_mlflow_selected_mlflow_is_never_imported(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # any `import mlflow` now raises ImportError
    _run(LoggerConfig(tensorboard=TensorBoardConfig()), tmp_path / "run", _config())
    loggers.finish_sweep(tmp_path)  # a sweep without an MLflow parent: nothing to close
    assert loggers.start(LoggerConfig(), tmp_path, _config(), []).loggers == []


def test_a_missing_mlflow_is_a_user_error_naming_the_extra(tmp_path, monkeypatch):
    from dlrun.config import validate

    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(DlrunError, match=r"pip install 'dlrun\[mlflow\]'"):
        loggers.start(LoggerConfig(mlflow=MLflowConfig()), tmp_path, _config(), [])
    with pytest.raises(DlrunError, match=r"pip install 'dlrun\[mlflow\]'"):  # before the run, from preflight
        validate(make_config(logger=LoggerConfig(mlflow=MLflowConfig())))


def test_the_default_config_logs_to_tensorboard_and_a_list_adds_mlflow():
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from dlrun.config import register_configs
    from tests.conftest import CONF_DIR

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        default = OmegaConf.to_object(compose("config")).logger
        both = OmegaConf.to_object(compose("config", overrides=["logger=[tensorboard,mlflow]",
                                                                "logger.mlflow.experiment_name=mine"])).logger
        none = OmegaConf.to_object(compose("config", overrides=["logger=[]"])).logger
    assert default == LoggerConfig(tensorboard=TensorBoardConfig())
    assert both.tensorboard == TensorBoardConfig() and both.mlflow == MLflowConfig(experiment_name="mine")
    assert none == LoggerConfig()


# ----------------------------------------------------------------------------------------------------------------------
# TensorBoard


def _session(folder: Path) -> tuple[dict, dict, int]:
    """(hparams, final scalars, end status) of the one HParams session under folder, read back from its events."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    (session,) = [p for p in folder.iterdir() if p.is_dir()]
    events = EventAccumulator(str(session))
    events.Reload()
    content = events.PluginTagToContent(metadata.PLUGIN_NAME)
    start = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    end = metadata.parse_session_end_info_plugin_data(content[metadata.SESSION_END_INFO_TAG])
    hparams = {k: getattr(v, v.WhichOneof("kind")) for k, v in start.hparams.items()}
    scalars = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    return hparams, scalars, end.status


def test_tensorboard_writes_an_hparams_session_named_after_the_overrides(tmp_path):
    from tensorboard.plugins.hparams import api_pb2

    run_dir = tmp_path / "run"
    _run(LoggerConfig(tensorboard=TensorBoardConfig()), run_dir, _config())
    (session,) = (run_dir / "hparams").iterdir()
    assert session.name == "optim.lr=0.01,model.hidden=[64],trainer.deterministic=true"
    hparams, scalars, status = _session(run_dir / "hparams")
    assert hparams == {"model": "mlp", "dataset": "digits", "optim.lr": 0.01, "model.hidden": "[64]",
                       "trainer.deterministic": True}
    assert scalars["final/test_error"] == [(3, pytest.approx(0.17))]
    assert scalars["final/train_error"] == [(3, pytest.approx(0.05))]
    assert scalars["final/best_val_loss"] == [(3, pytest.approx(0.37))]
    assert scalars["final/verdict_overfitting"] == [(3, 1.0)]  # mild
    assert scalars["final/verdict_distribution_shift"] == [(3, 2.0)]  # severe
    assert status == api_pb2.STATUS_SUCCESS


def test_a_sweep_writes_one_session_per_job_to_compare_in_the_hparams_tab(tmp_path):
    from tensorboard.plugins.hparams import api_pb2

    for job, dropout in (("0", "0"), ("1", "0.5")):
        _run(LoggerConfig(tensorboard=TensorBoardConfig()), tmp_path / job, _config(),
             overrides=[f"reg.dropout={dropout}", "trainer.max_epochs=3"], interrupted=job == "1")
    first, second = _session(tmp_path / "0" / "hparams"), _session(tmp_path / "1" / "hparams")
    assert (first[0]["reg.dropout"], second[0]["reg.dropout"]) == (0.0, 0.5)  # one type, one HParams column
    assert second[2] == api_pb2.STATUS_RUNNING  # interrupted: resumable


def test_a_second_finish_replaces_the_session(tmp_path):
    run_dir = tmp_path / "run"
    _run(LoggerConfig(tensorboard=TensorBoardConfig()), run_dir, _config(), overrides=["reg.dropout=0.1"])
    _run(LoggerConfig(tensorboard=TensorBoardConfig()), run_dir, _config(), overrides=["reg.dropout=0.2"])
    assert [p.name for p in (run_dir / "hparams").iterdir()] == ["reg.dropout=0.2"]


def test_no_hparams_session_without_event_files_or_when_switched_off(tmp_path):
    _run(LoggerConfig(tensorboard=TensorBoardConfig()), tmp_path / "a", _config(tensorboard=False))
    _run(LoggerConfig(tensorboard=TensorBoardConfig(hparams=False)), tmp_path / "b", _config())
    assert not (tmp_path / "a" / "hparams").exists() and not (tmp_path / "b" / "hparams").exists()


# ----------------------------------------------------------------------------------------------------------------------
# MLflow


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """A new sqlite store, made once: creating its tables runs MLflow's migrations, ~6 s."""
    pytest.importorskip("mlflow")
    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    _client(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def store(tmp_path, monkeypatch, empty_store):
    """A sqlite tracking store in tmp_path, also the working directory (MLflow's default artifact root is ./mlruns)."""
    import shutil

    monkeypatch.chdir(tmp_path)
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # for mlflow.search_runs; dlrun is given the URI explicitly
    return uri


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _run_id(run_dir: Path) -> str:
    return json.loads((run_dir / loggers.RUN_FILE).read_text())["run_id"]


def test_mlflow_records_params_every_epoch_verdicts_and_artifacts(tmp_path, store):
    import mlflow

    run_dir = tmp_path / "run"
    _run(LoggerConfig(mlflow=MLflowConfig(tracking_uri=store, experiment_name="digits")), run_dir, _config())
    client = _client(store)
    run = client.get_run(_run_id(run_dir))
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "optim.lr=0.01 model.hidden=[64] trainer.deterministic=true"
    params = run.data.params
    assert params["optim.lr"] == "0.01" and params["model.hidden"] == "[64]" and params["trainer.resume"] == "null"
    assert params["model.family"] == "mlp" and len(params) > 60  # the whole config, flattened
    for key in ("train_loss", "train_error", "val_loss", "val_error"):
        history = client.get_metric_history(run.info.run_id, key)
        assert [(m.step, m.value) for m in history] == [(r["epoch"], pytest.approx(r[key])) for r in ROWS]
    assert run.data.metrics["final/test_error"] == pytest.approx(0.17)
    assert run.data.metrics["final/verdict_overfitting"] == 1.0
    tags = run.data.tags
    assert tags["dlrun.stop_reason"] == "max_epochs" and tags["dlrun.interrupted"] == "false"
    assert tags["dlrun.overfitting.detected"] == "true" and tags["dlrun.overfitting.severity"] == "mild"
    assert tags["dlrun.underfitting.detected"] == "false" and tags["dlrun.distribution_shift.severity"] == "severe"
    assert tags["dlrun.command"].startswith("dlrun optim.lr=0.01 'model.hidden=[64]'")
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"report.html", "report.json", "report.md",
                                                                        "plots"}
    assert [a.path for a in client.list_artifacts(run.info.run_id, "plots")] == ["plots/learning_curves.png"]
    found = mlflow.search_runs(experiment_names=["digits"], filter_string="tags.`dlrun.overfitting.severity` = 'mild'")
    assert list(found["run_id"]) == [run.info.run_id]


def test_mlflow_logs_to_a_local_store_under_the_working_directory_by_default(tmp_path, store, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    tracking = loggers.start(LoggerConfig(mlflow=MLflowConfig()), tmp_path / "run", _config(), [])
    (logger,) = tracking.loggers
    assert str(tmp_path) in logger.uri  # MLflow's default store (sqlite:///mlflow.db, or ./mlruns), made absolute
    tracking.finish(_report(tmp_path / "run"))
    assert _client(logger.uri).get_run(logger.run_id).info.status == "FINISHED"


def test_epochs_reach_mlflow_in_batches_during_the_run(tmp_path, store, monkeypatch):
    run_dir = tmp_path / "run"
    tracking = loggers.start(LoggerConfig(mlflow=MLflowConfig(tracking_uri=store)), run_dir, _config(), [])
    tracking.on_epoch(ROWS[0])
    assert _client(store).get_metric_history(_run_id(run_dir), "val_loss") == []  # held until the next flush
    monkeypatch.setattr(loggers, "MLFLOW_FLUSH_SECONDS", 0.0)
    tracking.on_epoch(ROWS[1])
    assert [m.step for m in _client(store).get_metric_history(_run_id(run_dir), "val_loss")] == [1, 2]


def test_a_resumed_run_continues_its_mlflow_run(tmp_path, store):
    run_dir, cfg = tmp_path / "run", LoggerConfig(mlflow=MLflowConfig(tracking_uri=store))
    _run(cfg, run_dir, _config(max_epochs=2), rows=ROWS[:2], interrupted=True)
    first = _run_id(run_dir)
    assert _client(store).get_run(first).info.status == "KILLED"
    _run(cfg, run_dir, _config(max_epochs=3, resume=str(run_dir)), rows=ROWS[2:])
    run = _client(store).get_run(_run_id(run_dir))
    assert run.info.run_id == first and run.info.status == "FINISHED"
    assert [m.step for m in _client(store).get_metric_history(first, "val_loss")] == [1, 2, 3]
    assert run.data.params["trainer.max_epochs"] == "2"  # MLflow refuses to change a param: the change is a tag
    assert run.data.tags["dlrun.resumed_with"] == f"trainer.max_epochs=3 trainer.resume={run_dir}"
    _run(cfg, run_dir, _config(max_epochs=3), rows=ROWS)  # not a resume (trainer.overwrite): a new MLflow run
    assert _run_id(run_dir) != first


def test_a_run_that_raises_is_marked_failed(tmp_path, store):
    run_dir = tmp_path / "run"
    tracking = loggers.start(LoggerConfig(mlflow=MLflowConfig(tracking_uri=store)), run_dir, _config(), [])
    tracking.on_epoch(ROWS[0])
    tracking.fail(RuntimeError("out of memory"))
    run = _client(store).get_run(_run_id(run_dir))
    assert run.info.status == "FAILED" and run.data.tags["dlrun.error"] == "RuntimeError: out of memory"
    assert len(_client(store).get_metric_history(run.info.run_id, "val_loss")) == 1  # the epochs before are kept


def test_a_deleted_experiment_is_a_user_error(tmp_path, store):
    client = _client(store)
    client.delete_experiment(client.create_experiment("gone"))
    with pytest.raises(DlrunError, match="deleted experiment.*restore"):
        loggers.start(LoggerConfig(mlflow=MLflowConfig(tracking_uri=store, experiment_name="gone")), tmp_path, {}, [])


def test_the_jobs_of_a_sweep_nest_under_one_parent_run(tmp_path, store):
    import mlflow

    sweep, cfg = tmp_path / "sweep", LoggerConfig(mlflow=MLflowConfig(tracking_uri=store))
    parent = loggers.start_sweep(cfg, sweep, ["reg.dropout=0,0.5"])  # the launching process, before the jobs
    for job, dropout in (("0", "0"), ("1", "0.5")):
        _run(cfg, sweep / job, _config(), sweep_dir=sweep, overrides=[f"reg.dropout={dropout}"])
    (sweep / "summary.html").write_text("<html></html>")
    loggers.finish_sweep(sweep, {"best": "1", "failed": []})
    children = mlflow.search_runs(experiment_names=["dlrun"], filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    assert sorted(children["tags.mlflow.runName"]) == ["reg.dropout=0", "reg.dropout=0.5"]
    run = _client(store).get_run(parent)
    assert run.info.status == "FINISHED" and run.info.run_name == "sweep reg.dropout=0,0.5"
    assert run.data.tags["dlrun.best_job"] == "1" and [a.path for a in _client(store).list_artifacts(parent)] == \
        ["summary.html"]


def test_plots_drawn_after_a_job_ended_reach_mlflow_when_the_sweep_ends(tmp_path, store, monkeypatch):
    from dlrun.report import background

    sweep, cfg = tmp_path / "sweep", LoggerConfig(mlflow=MLflowConfig(tracking_uri=store, nest_sweeps=False))
    monkeypatch.setattr(background, "enabled", lambda: True)  # a basic-launcher sweep: drawn in a helper process
    _run(cfg, sweep / "0", _config(), sweep_dir=sweep)
    run_id = _run_id(sweep / "0")
    assert {a.path for a in _client(store).list_artifacts(run_id)} == {"report.json", "report.md"}
    loggers.finish_sweep(sweep)  # the callback calls it after background.shutdown(): the drawing is done
    assert {a.path for a in _client(store).list_artifacts(run_id)} == {"report.json", "report.md", "report.html",
                                                                        "plots"}
    loggers.finish_sweep(sweep)  # a second call (dlrun-summary, a resumed sweep) sends nothing twice
    assert [a.path for a in _client(store).list_artifacts(run_id, "plots")] == ["plots/learning_curves.png"]


def test_two_jobs_that_race_to_create_the_parent_share_one(tmp_path, store, monkeypatch):
    from mlflow.entities import ViewType

    client, sweep = _client(store), tmp_path / "sweep"
    experiment = client.create_experiment("race")
    first = loggers.parent_run_id(client, store, experiment, sweep, "sweep")
    real_read, reads = loggers._read_json, []

    def read_too_early(path):  # the second job read the folder before the first published its file
        reads.append(path)
        return None if len(reads) == 1 else real_read(path)

    monkeypatch.setattr(loggers, "_read_json", read_too_early)
    assert loggers.parent_run_id(client, store, experiment, sweep, "sweep") == first
    active = client.search_runs([experiment], run_view_type=ViewType.ACTIVE_ONLY)
    assert [r.info.run_id for r in active] == [first]  # the loser's candidate was deleted
    assert [p.name for p in sweep.iterdir()] == [loggers.PARENT_FILE]  # no temporary file left


def test_a_real_run_logs_each_epoch_and_its_report(tmp_path, store):
    from dlrun.pipeline import run

    both = LoggerConfig(tensorboard=TensorBoardConfig(), mlflow=MLflowConfig(tracking_uri=store))
    mlflow_only = LoggerConfig(mlflow=MLflowConfig(tracking_uri=store))
    for name, logger_cfg in (("both", both), ("mlflow_only", mlflow_only)):
        cfg = make_config(trainer={"max_epochs": 2, "tensorboard": True}, report={"plots": False}, logger=logger_cfg)
        result = run(cfg, tmp_path / name, overrides=["trainer.max_epochs=2"])
        run_id = _run_id(tmp_path / name)
        history = _client(store).get_metric_history(run_id, "val_error")
        rows = list(csv.DictReader((tmp_path / name / "metrics.csv").read_text().splitlines()))
        assert [(m.step, m.value) for m in history] == [(int(r["epoch"]), pytest.approx(float(r["val_error"])))
                                                        for r in rows] and len(rows) == 2
        assert _client(store).get_run(run_id).data.metrics["final/test_error"] == \
            pytest.approx(result.report["metrics"]["test"]["error"])
    assert _session(tmp_path / "both" / "hparams")[0]["trainer.max_epochs"] == 2.0
    assert list((tmp_path / "both").glob("events.out.tfevents.*"))
    assert not list((tmp_path / "mlflow_only").glob("events.out.tfevents.*"))  # logger=[mlflow]: no TensorBoard


@pytest.mark.slow
def test_jobs_in_other_processes_find_the_parent_that_the_first_of_them_created(tmp_path, store):
    code = ("import sys, json; from dlrun import loggers; from dlrun.config import LoggerConfig, MLflowConfig; "
            "from tests.test_loggers import _run, _config; from pathlib import Path; "
            "_run(LoggerConfig(mlflow=MLflowConfig(tracking_uri=sys.argv[1])), Path(sys.argv[2]), _config(), "
            "sweep_dir=Path(sys.argv[3]), overrides=[f'reg.dropout={sys.argv[4]}'])")
    loggers.connect(MLflowConfig(tracking_uri=store))  # the store exists, as after any earlier run
    sweep = tmp_path / "sweep"
    jobs = [subprocess.Popen([sys.executable, "-c", code, store, str(sweep / job), str(sweep), job], cwd=ROOT)
            for job in ("0", "1")]
    assert [job.wait(timeout=300) for job in jobs] == [0, 0]
    parent = json.loads((sweep / loggers.PARENT_FILE).read_text())["run_id"]
    runs = {_run_id(sweep / job): _client(store).get_run(_run_id(sweep / job)) for job in ("0", "1")}
    assert [r.data.tags.get("mlflow.parentRunId") for r in runs.values()] == [parent, parent]


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_a_sweep_nests_its_jobs_and_writes_their_hparams(tmp_path, store, launcher):
    """basic: jobs one after another, plots drawn in report/background.py's helper; joblib: jobs in other processes."""
    import mlflow

    extra = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"] if launcher == "joblib" else []
    if extra:
        pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    sweep = tmp_path / "sweep"
    done = run_dlrun(["-m", *extra, "reg.dropout=0,0.5", "trainer.max_epochs=2", "trainer.progress=false",
                      "model.hidden=[16]", "logger=[tensorboard,mlflow]", f"logger.mlflow.tracking_uri={store}",
                      f"hydra.sweep.dir={sweep}"], tmp_path)
    assert done.returncode == 0, done.stderr
    parent = json.loads((sweep / loggers.PARENT_FILE).read_text())["run_id"]
    children = mlflow.search_runs(experiment_names=["dlrun"], filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    assert sorted(children["params.reg.dropout"]) == ["0.0", "0.5"]
    assert sorted(children["status"]) == ["FINISHED", "FINISHED"]
    for run_id in children["run_id"]:
        assert [m.step for m in _client(store).get_metric_history(run_id, "val_error")] == [1, 2]
        assert {"report.html", "report.json", "plots"} <= {a.path for a in _client(store).list_artifacts(run_id)}
    assert _client(store).get_run(parent).info.status == "FINISHED"
    assert {_session(sweep / job / "hparams")[0]["reg.dropout"] for job in ("0", "1")} == {0.0, 0.5}
