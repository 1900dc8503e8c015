"""The run and sweep folders: the checks on hydra.run.dir and hydra.sweep.dir that cli.py makes before Hydra writes
.hydra/ into them (so a refused command leaves an earlier run or sweep untouched), and the removal of a run folder
that a user error left holding nothing but Hydra's own files.

cli.py imports this for every command, `dlrun --help` included: nothing heavy is imported at the top (no torch,
tests/test_cli.py); the checks import what they need when they run.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dlrun.errors import DlrunError
from dlrun.preflight import CommandLine


def chosen_values(argv: list[str], key: str) -> list[str]:
    """The values the command line gives `key` (hydra.run.dir, hydra.sweep.dir), the last one Hydra's."""
    return [o.split("=", 1)[1] for o in CommandLine(argv).overrides if o.startswith(f"{key}=")]


def drop_stub(run_dir: Path) -> None:
    """A run that stopped on a user error before writing anything leaves no folder behind: Hydra made it with its
    .hydra/ and log only (an error found while the data loads, say). A folder holding anything else is kept."""
    import contextlib
    import re
    import shutil

    if not run_dir.is_dir() or any(p.name != ".hydra" and p.suffix != ".log" for p in run_dir.iterdir()):
        return
    shutil.rmtree(run_dir, ignore_errors=True)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", run_dir.parent.name):  # Hydra's outputs/DATE, when this was its only run
        with contextlib.suppress(OSError):
            run_dir.parent.rmdir()


# what makes a folder hold a run: checking before Hydra writes .hydra/ into it keeps the earlier run untouched
RUN_FILES = ("checkpoints", "report.json", "metrics.csv")


def check_run_dir(cfg: DictConfig, argv: list[str]) -> None:
    """Refuse a run folder that already holds a run, unless the user resumes it or says trainer.overwrite=true."""
    chosen = chosen_values(argv, "hydra.run.dir")
    if chosen and not chosen[-1].strip():  # Hydra would write into the current folder
        raise DlrunError("hydra.run.dir= is empty: give the folder to write the run into, or leave the key out "
                         "for outputs/DATE/TIME")
    run_dir = Path(chosen[-1]).expanduser() if chosen else Path("outputs")  # Hydra's default: outputs/DATE/TIME
    try:
        run_dir.mkdir(parents=True, exist_ok=True)  # Hydra would create it next, with a traceback if it cannot
    except OSError as err:
        key = f"hydra.run.dir={chosen[-1]}" if chosen else f"the run folder {run_dir.resolve()}"
        raise DlrunError(f"{key} cannot be created: {err.strerror or err}; choose a folder you can write to "
                         "with hydra.run.dir=PATH") from None
    if not chosen:
        return  # Hydra's default folder is new for every run (a timestamp)
    jobs = _job_folders(run_dir)
    if jobs:
        raise DlrunError(f"hydra.run.dir={chosen[-1]} holds a sweep (jobs {', '.join(p.name for p in jobs)}): a "
                         "single run goes to another folder")
    if cfg.trainer.resume:  # checked before Hydra writes this run's .hydra/ over the earlier run's
        from dlrun.pipeline import check_resume_here

        check_resume_here(OmegaConf.to_object(cfg), run_dir)
        return
    if cfg.trainer.overwrite:
        return
    held = [name for name in RUN_FILES if (run_dir / name).exists()]
    if held:
        raise DlrunError(f"hydra.run.dir={chosen[-1]} already holds a run ({', '.join(held)}): choose another "
                         f"folder, continue it with trainer.resume={chosen[-1]}, or replace it with "
                         "trainer.overwrite=true")


def _job_folders(folder: Path) -> list[Path]:
    """The job folders of a sweep in `folder` (0/, 1/, ... holding .hydra/), in job order."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.name.isdigit() and (p / ".hydra").is_dir()),
                  key=lambda p: int(p.name))


def check_sweep_dir(argv: list[str]) -> None:
    """The sweep's rule for its folder, before Hydra writes into it: a hydra.sweep.dir that holds an earlier sweep's
    jobs is refused, unless trainer.resume=auto continues that same sweep (job i's folder must hold a run of this
    command's job i: same overrides, but for those a resume may change) or trainer.overwrite=true replaces it (its
    job folders and summary are removed first, so the summary covers only the new jobs)."""
    import shutil

    import yaml

    from dlrun.pipeline import RESUME_MAY_CHANGE
    from dlrun.preflight import job_overrides
    from dlrun.sweep.summary import parse_overrides

    overrides = CommandLine(argv).overrides
    chosen = chosen_values(argv, "hydra.sweep.dir")
    if not chosen:
        return  # Hydra's default folder is new for every sweep (a timestamp)
    if not chosen[-1].strip():
        raise DlrunError("hydra.sweep.dir= is empty: give the sweep's folder, or leave the key out for "
                         "multirun/DATE/TIME")
    sweep_dir = Path(chosen[-1]).expanduser()
    held = [name for name in RUN_FILES if (sweep_dir / name).exists()]
    if held:
        raise DlrunError(f"hydra.sweep.dir={chosen[-1]} holds a single run ({', '.join(held)}): a sweep goes to "
                         "another folder")
    jobs = _job_folders(sweep_dir)
    if not jobs:
        return
    value = {o.split("=", 1)[0]: o.split("=", 1)[1] for o in overrides if "=" in o}
    resume, overwrite = value.get("trainer.resume", ""), value.get("trainer.overwrite", "false").lower() == "true"
    if overwrite:
        for job in jobs:
            shutil.rmtree(job)
        for old in [*sweep_dir.glob("summary*.*"), sweep_dir / "sweep.json"]:
            old.unlink(missing_ok=True)
        return
    if resume != "auto":
        raise DlrunError(f"hydra.sweep.dir={chosen[-1]} already holds a sweep (jobs {', '.join(p.name for p in jobs)}): "
                         "choose another folder, continue it with trainer.resume=auto (the same command), or replace "
                         "it with trainer.overwrite=true")
    planned = job_overrides(overrides)
    if planned is None:
        return  # a search: each job checks its own folder (pipeline.check_auto_resume)

    def settings(items: list[str]) -> dict[str, str]:
        return {k: v for k, v in parse_overrides(items).items() if k not in RESUME_MAY_CHANGE}

    for job in jobs:
        saved_path = job / ".hydra" / "overrides.yaml"
        saved = settings(yaml.safe_load(saved_path.read_text()) or []) if saved_path.is_file() else {}
        now = settings(planned[int(job.name)]) if int(job.name) < len(planned) else None
        if now is None or saved != now:
            differ = [k for k in {**saved, **(now or {})} if now is None or saved.get(k) != now.get(k)]
            ran = " ".join(f"{k}={saved[k]}" if k in saved else f"no {k}" for k in differ) or "the defaults"
            wants = "no job" if now is None else " ".join(f"{k}={now[k]}" if k in now else f"no {k}" for k in differ)
            raise DlrunError(f"hydra.sweep.dir={chosen[-1]} holds another sweep: its job {job.name} ran {ran}, this "
                             f"command's job {job.name} is {wants}; trainer.resume=auto continues a sweep only with "
                             "the same command: choose another folder, or replace it with trainer.overwrite=true")
