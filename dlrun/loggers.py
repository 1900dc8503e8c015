"""Experiment loggers (`logger=[tensorboard,mlflow]`): what a run did, in the tools a team already compares runs in.

- tensorboard (the default): the per-epoch curves are the event files engine/loop.py writes in the run folder
  (trainer.tensorboard); this adds, at the end, an HParams session in RUN_DIR/hparams/<overrides>/: the overrides as
  hparams, the final errors and the verdicts as metrics. TensorBoard names a run after its folder, so the session's
  folder says what was run (a sweep's job folders are 0, 1, ...; a single run's a timestamp).
- mlflow (`pip install 'dlrun[mlflow]'`): the flattened config as params, every epoch's metrics (step = epoch), the
  final errors, the verdicts and the stop reason as tags, the report and plots as artifacts. The jobs of a sweep are
  child runs of one parent run per sweep folder, whose id is kept in SWEEP_DIR/mlflow_parent_run.json so that jobs
  in other processes (joblib, Slurm) find it.

The pipeline calls `start()` before training, `on_epoch(row)` after each epoch and `finish(report)` at the end (or
`fail()`); the sweep callback calls `start_sweep()` and `finish_sweep()`. Everything takes plain values (the
dataclasses of dlrun/config.py, the report dict), so a test calls it without Hydra. mlflow is imported only when
logger.mlflow is selected, and a run without it pays one loop over an empty list per epoch.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shlex
import time
from pathlib import Path
from typing import Any, Optional

from dlrun.errors import DlrunError

log = logging.getLogger(__name__)

EPOCH_METRICS = ("train_loss", "train_error", "val_loss", "val_error", "lr", "epoch_seconds")  # loop.py COLUMNS
SEVERITY_LEVEL = {"none": 0, "mild": 1, "severe": 2}  # verdicts as numbers: HParams sorts and filters jobs by them
# overrides that change where or how a run is kept, not what it trains: left out of run names and hparams
NOT_TRAINING = ("trainer.resume", "trainer.overwrite", "trainer.progress", "trainer.checkpoint_every",
                "trainer.threads", "trainer.tensorboard")
HPARAMS_DIR = "hparams"  # RUN_DIR/hparams/<name>/: the TensorBoard HParams session (replaced by each finish)
RUN_FILE = "mlflow_run.json"  # in the run folder: the MLflow run, continued when the run is resumed
PARENT_FILE = "mlflow_parent_run.json"  # in the sweep folder: the parent run every job nests under
# epochs are sent to MLflow in batches at most this often: one log_batch to a sqlite store took 8-38 ms (median 17, on
# the 2-core CI machine), to a server it is a round trip, while a small model's epoch can take less; the rest at finish
MLFLOW_FLUSH_SECONDS = 10.0
MLFLOW_MAX_PARAM = 500  # characters of a param value that every MLflow version and server accepts


# ----------------------------------------------------------------------------------------------------------------------
# names: what was run, in a run name, a folder name and hparams


def training_overrides(overrides: list[str]) -> list[str]:
    """The overrides that change what is trained: Hydra's own and NOT_TRAINING's keys left out."""
    keep = []
    for item in overrides:
        key = item.split("=", 1)[0].lstrip("+~")
        if not (key.startswith("hydra") or key.startswith("logger") or key in NOT_TRAINING):
            keep.append(item)
    return keep


def run_name(overrides: list[str]) -> str:
    """'optim.lr=0.01 reg.dropout=0.5', or 'defaults' for a run without overrides."""
    return " ".join(training_overrides(overrides)) or "defaults"


def folder_name(overrides: list[str], limit: int = 120) -> str:
    """run_name as one path component: 'optim.lr=0.01,reg.dropout=0.5' (separators and shell-hostile characters as
    '_'); past `limit` characters, cut and suffixed with a hash so two long names stay apart."""
    import hashlib

    name = ",".join(training_overrides(overrides)) or "defaults"
    safe = re.sub(r"[^\w.=,+\-\[\]]", "_", name)
    if len(safe) > limit:
        safe = safe[:limit - 9] + "_" + hashlib.sha1(name.encode()).hexdigest()[:8]
    return safe


def _typed(value: str) -> Any:
    """An override's value as TensorBoard wants an hparam: a bool, a number, or the text."""
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    try:
        return float(value)  # TensorBoard keeps every number as a double
    except ValueError:
        return value


def hparams_of(config: dict, overrides: list[str]) -> dict[str, Any]:
    """The model and dataset, then each training override: key -> bool, float or str."""
    hparams: dict[str, Any] = {"model": config.get("model", {}).get("family", "?"),
                               "dataset": config.get("dataset", {}).get("name", "?")}
    for item in training_overrides(overrides):
        key, sep, value = item.partition("=")
        if sep:
            hparams[key.lstrip("+~")] = _typed(value)
    return hparams


def flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    """{'trainer': {'seed': 0}} -> {'trainer.seed': 0}: MLflow's params are flat."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _param_text(value: Any) -> str:
    # JSON for everything but strings reads as Hydra's override syntax (null, true, [64, 64]): a param can be pasted
    # back on the command line
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= MLFLOW_MAX_PARAM else text[:MLFLOW_MAX_PARAM - 1] + "…"


def _final_metrics(report: dict) -> dict[str, float]:
    """The evaluation's error and loss per split, the best monitored value, the verdicts as 0/1/2: what runs are
    compared by."""
    out = {}
    for split, values in report.get("metrics", {}).items():
        for name in ("error", "loss"):
            if isinstance(values.get(name), (int, float)):
                out[f"{split}_{name}"] = float(values[name])
    objective = report.get("run", {}).get("objective") or {}
    if isinstance(objective.get("value"), (int, float)) and math.isfinite(objective["value"]):
        out[f"best_{objective['monitor']}"] = float(objective["value"])
    for name, finding in report.get("diagnosis", {}).items():
        out[f"verdict_{name}"] = float(SEVERITY_LEVEL.get(finding.get("severity"), 0) if finding.get("detected") else 0)
    return out


def _write_json(path: Path, content: dict) -> None:
    """Atomically (a temp file, then a rename): a job in another process never reads half a file."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(content, indent=2) + "\n")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------------------------------
# what the pipeline calls


class Loggers:
    """The selected loggers behind one interface; `Loggers()` logs nothing (a torchrun rank other than 0)."""

    def __init__(self, loggers: Optional[list] = None):
        self.loggers = list(loggers or [])
        self._per_epoch = [lg for lg in self.loggers if hasattr(lg, "on_epoch")]

    def on_epoch(self, row: dict, max_epochs: Optional[int] = None) -> None:
        """One finished epoch: a row of engine/loop.py's History (keys COLUMNS). `max_epochs` is ignored, so this
        also fits fit()'s on_epoch(row, max_epochs)."""
        for logger in self._per_epoch:
            logger.on_epoch(row)

    def finish(self, report: dict, run_dir: Optional[Path] = None) -> None:
        """The run ended (or was interrupted) and its report is written."""
        if not report:  # nothing was evaluated (a torchrun rank other than 0)
            return
        for logger in self.loggers:
            logger.finish(report, None if run_dir is None else Path(run_dir))

    def fail(self, error: Optional[BaseException] = None) -> None:
        """The run raised before its report: close what is open, marked failed."""
        for logger in self.loggers:
            if hasattr(logger, "fail"):
                logger.fail(error)


def start(logger_cfg: Any, run_dir: Path, config: dict, overrides: list[str],
          sweep_dir: Optional[Path] = None) -> Loggers:
    """The loggers `logger_cfg` selects (a LoggerConfig; None selects none), started for one run.

    `config` is the whole config as plain containers (pipeline._as_dict), `overrides` the command line's, and
    `sweep_dir` the sweep folder when this run is a job of `dlrun -m` (its MLflow run then nests under the sweep's).
    Raises DlrunError when MLflow is selected but not installed, or its tracking store cannot be used."""
    run_dir = Path(run_dir)
    selected = []
    tensorboard = getattr(logger_cfg, "tensorboard", None)
    if tensorboard is not None and tensorboard.hparams and config.get("trainer", {}).get("tensorboard", True):
        selected.append(TensorBoardHParams(run_dir, config, overrides))
    mlflow_cfg = getattr(logger_cfg, "mlflow", None)
    if mlflow_cfg is not None:
        selected.append(MLflowLogger(mlflow_cfg, run_dir, config, overrides, sweep_dir))
    return Loggers(selected)


# ----------------------------------------------------------------------------------------------------------------------
# TensorBoard: one HParams session per run, written at the end


class TensorBoardHParams:
    """RUN_DIR/hparams/<overrides>/: a session (the hparams, then its end status) and, as scalars, the final errors
    and verdicts. No experiment summary is written: with one per run, TensorBoard would show the first run's hparams
    only; without, it takes the union of every session's hparams, and the metrics from the scalars under each."""

    def __init__(self, run_dir: Path, config: dict, overrides: list[str]):
        self.run_dir = run_dir
        self.hparams = hparams_of(config, overrides)
        self.name = folder_name(overrides)
        self.command = " ".join(["dlrun", *(shlex.quote(o) for o in overrides)])
        self.started = time.time()

    def finish(self, report: dict, run_dir: Optional[Path]) -> None:
        import shutil

        try:
            from tensorboard.compat.proto.summary_pb2 import Summary
            from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.info("tensorboard is not installed: no HParams session (pip install tensorboard)")
            return
        folder = (run_dir or self.run_dir) / HPARAMS_DIR
        shutil.rmtree(folder, ignore_errors=True)  # one session per run folder, even after a resume or an overwrite

        def plugin_summary(tag: str, data: Any) -> Any:
            return Summary(value=[Summary.Value(tag=tag, metadata=metadata.create_summary_metadata(data),
                                                tensor=metadata.NULL_TENSOR)])

        start_info = plugin_data_pb2.SessionStartInfo(start_time_secs=self.started)
        for key, value in self.hparams.items():
            if isinstance(value, bool):  # before float: a bool is an int in Python
                start_info.hparams[key].bool_value = value
            elif isinstance(value, float):
                start_info.hparams[key].number_value = value
            else:
                start_info.hparams[key].string_value = str(value)
        interrupted = report.get("run", {}).get("interrupted", False)
        end_info = plugin_data_pb2.SessionEndInfo(
            status=api_pb2.STATUS_RUNNING if interrupted else api_pb2.STATUS_SUCCESS,
            end_time_secs=time.time())
        step = int(report.get("run", {}).get("epochs_run") or 0)
        writer = SummaryWriter(log_dir=str(folder / self.name))
        try:
            file_writer = writer._get_file_writer()
            file_writer.add_summary(plugin_summary(metadata.SESSION_START_INFO_TAG,
                                                   plugin_data_pb2.HParamsPluginData(session_start_info=start_info)))
            for name, value in _final_metrics(report).items():
                writer.add_scalar(f"final/{name}", value, step)
            writer.add_text("run/command", self.command, step)
            file_writer.add_summary(plugin_summary(metadata.SESSION_END_INFO_TAG,
                                                   plugin_data_pb2.HParamsPluginData(session_end_info=end_info)))
        finally:
            writer.close()


# ----------------------------------------------------------------------------------------------------------------------
# MLflow


def _import_mlflow() -> Any:
    try:
        import mlflow
    except ImportError:
        raise DlrunError("logger=[...,mlflow] needs MLflow, which is not installed here: pip install 'dlrun[mlflow]' "
                         "(or choose logger=[tensorboard])") from None
    return mlflow


def resolve_tracking_uri(configured: Optional[str]) -> str:
    """logger.mlflow.tracking_uri, else $MLFLOW_TRACKING_URI, else MLflow's default (sqlite:///mlflow.db in MLflow 3,
    ./mlruns before), with a relative local path made absolute: jobs started elsewhere (submitit, another folder)
    then write to the same store as the sweep's parent run."""
    mlflow = _import_mlflow()
    uri = configured or mlflow.get_tracking_uri()  # MLflow's own order: set_tracking_uri, the variable, the default
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        path = uri[len("sqlite:///"):]
        return uri if path in ("", ":memory:") else "sqlite:///" + os.path.abspath(path)
    if uri.startswith("file:") and not uri.startswith("file://"):
        return Path(uri[len("file:"):]).resolve().as_uri()
    if "://" not in uri and not uri.startswith("databricks"):  # a plain folder: MLflow's file store
        return Path(uri).resolve().as_uri()
    return uri


def connect(mlflow_cfg: Any) -> tuple[Any, str, str]:
    """(MlflowClient, resolved tracking URI, experiment id) for logger.mlflow; the experiment is created if new.

    A client, not mlflow.start_run: the fluent API keeps the active run in global state, which a notebook or a test
    running several runs in one process would share."""
    mlflow = _import_mlflow()
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    uri = resolve_tracking_uri(mlflow_cfg.tracking_uri)
    name = mlflow_cfg.experiment_name
    try:
        client = MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            try:
                experiment_id = client.create_experiment(name)
            except MlflowException:  # another job created it since: use theirs
                experiment = client.get_experiment_by_name(name)
                if experiment is None:
                    raise
                experiment_id = experiment.experiment_id
        else:
            experiment_id = experiment.experiment_id
            if experiment.lifecycle_stage == "deleted":
                raise DlrunError(f"logger.mlflow.experiment_name={name!r} is a deleted experiment in {uri}: restore "
                                 f"it (mlflow experiments restore --experiment-id {experiment_id}) or choose another "
                                 "logger.mlflow.experiment_name")
    except MlflowException as err:
        raise DlrunError(f"MLflow cannot use the tracking store {uri} (logger.mlflow.tracking_uri="
                         f"{mlflow_cfg.tracking_uri}): {_first_line(err)}; give a reachable server or a local store "
                         "such as logger.mlflow.tracking_uri=sqlite:///mlflow.db") from None
    return client, uri, experiment_id


def _first_line(err: BaseException) -> str:
    text = str(getattr(err, "message", None) or err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _read_json(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def parent_run_id(client: Any, uri: str, experiment_id: str, sweep_dir: Path, name: str,
                  tags: Optional[dict] = None) -> Optional[str]:
    """The sweep's parent run: the one SWEEP_DIR/mlflow_parent_run.json names, else a new one.

    Race-safe without a lock: a process that finds no file creates a candidate run, writes its id to a temp file and
    publishes it with os.link, which fails if the file exists (atomic, also on NFS, where Slurm jobs share the sweep
    folder); the loser deletes its candidate and uses the winner's. Returns None (the job is not nested) when the file
    names another store or experiment than this job logs to."""
    path = Path(sweep_dir) / PARENT_FILE
    found = _read_json(path)
    if found is None:
        import tempfile

        run = client.create_run(experiment_id, run_name=name,
                                tags={"dlrun.sweep_dir": str(sweep_dir), "mlflow.source.name": "dlrun", **(tags or {})})
        content = {"run_id": run.info.run_id, "tracking_uri": uri, "experiment_id": experiment_id}
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(content, indent=2) + "\n")
            os.link(tmp, path)
            return run.info.run_id
        except FileExistsError:
            client.delete_run(run.info.run_id)
            found = _read_json(path)
        finally:
            os.unlink(tmp)
    if found is None or found.get("tracking_uri") != uri or found.get("experiment_id") != experiment_id:
        log.warning("%s names another MLflow store or experiment (%s) than this job's (%s, experiment %s): this job's "
                    "run is not nested under the sweep's", path, found, uri, experiment_id)
        return None
    return found["run_id"]


class MLflowLogger:
    """One MLflow run per dlrun run, continued when the run is resumed into its own folder (a requeued Slurm job)."""

    def __init__(self, mlflow_cfg: Any, run_dir: Path, config: dict, overrides: list[str],
                 sweep_dir: Optional[Path] = None):
        self.client, self.uri, experiment_id = connect(mlflow_cfg)  # first: a missing mlflow is a DlrunError
        from mlflow.entities import Param, RunTag

        self.cfg = mlflow_cfg
        self.run_dir = run_dir
        self.pending: list = []  # Metric entities not sent yet
        self.flushed = time.monotonic()
        self.failed = False  # after an error, the run trains on without MLflow (the run folder has everything)
        command = " ".join(["dlrun", *(shlex.quote(o) for o in overrides)])
        tags = {"dlrun.command": command, "mlflow.note.content": f"`{command}`", "dlrun.run_dir": str(run_dir),
                "mlflow.source.name": "dlrun", "mlflow.source.type": "LOCAL"}
        params = {key: _param_text(value) for key, value in flatten(config).items()}

        previous = _read_json(run_dir / RUN_FILE) if config.get("trainer", {}).get("resume") else None
        self.run_id = self._continue(previous, params) if previous and previous.get("tracking_uri") == self.uri \
            else None
        if self.run_id is None:
            if sweep_dir is not None and mlflow_cfg.nest_sweeps:
                parent = parent_run_id(self.client, self.uri, experiment_id, Path(sweep_dir),
                                       name=f"sweep {Path(sweep_dir).name}")
                if parent is not None:
                    tags["mlflow.parentRunId"] = parent
            self.run_id = self.client.create_run(experiment_id, run_name=run_name(overrides), tags=tags).info.run_id
            self._send(params=[Param(k, v) for k, v in params.items()])
        else:
            self._send(tags=[RunTag(k, v) for k, v in tags.items()])
        _write_json(run_dir / RUN_FILE, {"run_id": self.run_id, "tracking_uri": self.uri,
                                         "experiment_id": experiment_id, "artifacts": mlflow_cfg.artifacts})
        log.info("MLflow run %s in %s", self.run_id, self.uri)

    def _continue(self, previous: dict, params: dict[str, str]) -> Optional[str]:
        """Reopen the run this folder logged before the resume; new params added, changed ones (a resume may change
        trainer.max_epochs, ...) as one tag, since MLflow refuses to change a param."""
        from mlflow.entities import Param, RunTag
        from mlflow.exceptions import MlflowException

        try:
            run = self.client.get_run(previous["run_id"])
        except MlflowException:
            return None
        if run.info.lifecycle_stage == "deleted":
            return None
        self.client.update_run(run.info.run_id, status="RUNNING")
        logged = run.data.params
        changed = " ".join(f"{k}={v}" for k, v in params.items() if k in logged and logged[k] != v)
        self.run_id = run.info.run_id
        self._send(params=[Param(k, v) for k, v in params.items() if k not in logged],
                   tags=[RunTag("dlrun.resumed_with", changed)] if changed else [])
        return run.info.run_id

    def _send(self, metrics: tuple = (), params: tuple = (), tags: tuple = ()) -> None:
        """log_batch within MLflow's limits per call (1000 metrics, 100 params, 100 tags)."""
        metrics, params, tags = list(metrics), list(params), list(tags)
        while metrics or params or tags:
            self.client.log_batch(self.run_id, metrics=metrics[:1000], params=params[:100], tags=tags[:100])
            metrics, params, tags = metrics[1000:], params[100:], tags[100:]

    def on_epoch(self, row: dict) -> None:
        from mlflow.entities import Metric

        if self.failed:
            return
        now = int(time.time() * 1000)
        epoch = int(row["epoch"])
        self.pending += [Metric(key, float(row[key]), now, epoch) for key in EPOCH_METRICS if key in row]
        if time.monotonic() - self.flushed >= MLFLOW_FLUSH_SECONDS:
            self._flush()

    def _flush(self) -> None:
        pending, self.pending = self.pending, []
        self.flushed = time.monotonic()
        try:
            self._send(metrics=pending)
        except Exception as err:  # noqa: BLE001 - a tracking server that went away must not end the training
            self.failed = True
            log.warning("MLflow logging stopped (%s); the run goes on and its folder holds every result", err)

    def finish(self, report: dict, run_dir: Optional[Path]) -> None:
        from mlflow.entities import Metric, RunTag

        run_dir = run_dir or self.run_dir
        self._flush()
        if self.failed:
            return
        info = report.get("run", {})
        now, step = int(time.time() * 1000), int(info.get("epochs_run") or 0)
        finals = {**_final_metrics(report), "best_epoch": info.get("best_epoch"),
                  "wall_seconds": info.get("wall_seconds")}
        # final/: the evaluation after training (best weights, dropout off), not the epochs' running figures
        metrics = [Metric(f"final/{k}", float(v), now, step) for k, v in finals.items() if isinstance(v, (int, float))]
        tags = {"dlrun.stop_reason": str(info.get("stop_reason")),
                "dlrun.interrupted": str(bool(info.get("interrupted"))).lower()}
        for name, finding in report.get("diagnosis", {}).items():
            tags[f"dlrun.{name}.detected"] = str(bool(finding.get("detected"))).lower()
            tags[f"dlrun.{name}.severity"] = str(finding.get("severity"))
        try:
            self._send(metrics=metrics, tags=[RunTag(k, v) for k, v in tags.items()])
            if self.cfg.artifacts:
                for name in ("report.json", "report.md"):
                    if (run_dir / name).is_file():
                        self.client.log_artifact(self.run_id, str(run_dir / name))
                if not _drawn_later():
                    _send_drawn_files(self.client, self.run_id, run_dir)
            # interrupted (a signal, a Slurm time limit): KILLED until a resume reopens it
            self.client.set_terminated(self.run_id, status="KILLED" if info.get("interrupted") else "FINISHED")
        except Exception as err:  # noqa: BLE001 - the run is done and its folder complete: say so, do not fail it
            log.warning("MLflow could not record the end of run %s (%s); the run folder %s holds every result",
                        self.run_id, err, run_dir)

    def fail(self, error: Optional[BaseException] = None) -> None:
        self._flush()  # the epochs before the error are worth keeping
        if self.failed:
            return
        try:
            if error is not None:
                from mlflow.entities import RunTag

                self._send(tags=[RunTag("dlrun.error", f"{type(error).__name__}: {error}"[:5000])])
            # a second Ctrl-C stops at once: killed, like an interrupted run, not failed
            status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
            self.client.set_terminated(self.run_id, status=status)
        except Exception as err:  # noqa: BLE001 - the run's own error is the one to report
            log.warning("MLflow could not mark run %s failed (%s)", self.run_id, err)


def _drawn_later() -> bool:
    """True in a sweep on the basic launcher: report.html and plots/ are still being drawn in report/background.py's
    helper process when the run ends. finish_sweep sends them, after the callback has waited for the drawing."""
    from dlrun.report import background

    return background.enabled()


def _send_drawn_files(client: Any, run_id: str, run_dir: Path) -> None:
    """report.html and plots/, unless the run already has them."""
    sent = {a.path for a in client.list_artifacts(run_id)}
    if (run_dir / "report.html").is_file() and "report.html" not in sent:
        client.log_artifact(run_id, str(run_dir / "report.html"))
    if (run_dir / "plots").is_dir() and "plots" not in sent:
        client.log_artifacts(run_id, str(run_dir / "plots"), artifact_path="plots")


# ----------------------------------------------------------------------------------------------------------------------
# sweeps: called by dlrun/sweep/callback.py in the process that launches the jobs


def start_sweep(logger_cfg: Any, sweep_dir: Path, overrides: list[str]) -> Optional[str]:
    """Create the sweep's MLflow parent run before any job starts (when logger.mlflow nests sweeps); return its id.

    Done once by the launching process, the parent exists before parallel jobs start, so they need not race to
    create it (nor to create a new sqlite store's tables); a job that finds no parent file creates one race-safely."""
    mlflow_cfg = getattr(logger_cfg, "mlflow", None)
    if mlflow_cfg is None or not mlflow_cfg.nest_sweeps:
        return None
    client, uri, experiment_id = connect(mlflow_cfg)
    command = " ".join(["dlrun", "-m", *(shlex.quote(o) for o in overrides)])
    return parent_run_id(client, uri, experiment_id, Path(sweep_dir), name=f"sweep {run_name(overrides)}",
                         tags={"dlrun.command": command, "mlflow.note.content": f"`{command}`"})


def finish_sweep(sweep_dir: Path, summary: Optional[dict] = None) -> None:
    """After every job (and report/background.py's drawing) ended: send the jobs' report.html and plots/ that were
    drawn after their runs ended, then close the sweep's parent run, if it has one, with the summary files as
    artifacts and the best job and the failures as tags. A sweep without MLflow returns at once, importing nothing."""
    sweep_dir = Path(sweep_dir)
    jobs = {job: _read_json(job / RUN_FILE) for job in sweep_dir.iterdir() if (job / RUN_FILE).is_file()} \
        if sweep_dir.is_dir() else {}
    parent = _read_json(sweep_dir / PARENT_FILE)
    if parent is None and not jobs:
        return
    from mlflow.tracking import MlflowClient

    for job, info in jobs.items():
        if info and info.get("artifacts", True):
            try:
                _send_drawn_files(MlflowClient(tracking_uri=info["tracking_uri"]), info["run_id"], job)
            except Exception as err:  # noqa: BLE001 - the job's folder holds them; the others still get theirs
                log.warning("MLflow could not receive %s's report.html and plots (%s)", job, err)
    if parent is None:
        return
    try:
        client = MlflowClient(tracking_uri=parent["tracking_uri"])
        for name in ("summary.html", "summary.json", "summary.md", "summary.csv"):
            if (sweep_dir / name).is_file():
                client.log_artifact(parent["run_id"], str(sweep_dir / name))
        if summary:
            client.set_tag(parent["run_id"], "dlrun.best_job", str(summary.get("best")))
            client.set_tag(parent["run_id"], "dlrun.failed_jobs", str(len(summary.get("failed", []))))
        client.set_terminated(parent["run_id"], status="FINISHED")
    except Exception as err:  # noqa: BLE001 - the sweep is done and its summary written: say so, do not fail it
        log.warning("MLflow could not close the sweep's parent run %s (%s)", parent.get("run_id"), err)
