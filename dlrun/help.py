"""`dlrun --help`, answered before Hydra composes anything (cli.main): Hydra's own --help composed the whole config
(~2 s) and listed the ConfigStore's *_schema entries as options. The groups are conf/'s folders (and the user's
--config-dir), so a new yaml shows up by itself; a new group also wants a line in GROUP_HELP (tests/test_help.py)."""

from __future__ import annotations

from pathlib import Path

GROUP_HELP = {  # group: (what it sets, its main keys)
    "model": ("the network, one family per option", "model.hidden, model.width, model.weights, model.freeze"),
    "dataset": ("the data, one source per option", "dataset.root, dataset.path, dataset.target, dataset.max_samples"),
    "split": ("how the data is cut: train, validation, test, a train-dev split, k-fold",
              "split.train, split.val, split.test, split.train_dev, split.folds"),
    "reg": ("regularisation and data augmentation", "reg.dropout, reg.weight_decay, reg.l1, reg.augment.noise"),
    "early_stop": ("when training stops", "early_stop.monitor, early_stop.patience, early_stop.min_delta"),
    "optim": ("the optimizer", "optim.lr, optim.momentum, optim.betas"),
    "sched": ("the learning-rate schedule", "sched.step_size, sched.gamma, sched.min_lr"),
    "trainer": ("the training loop", "trainer.max_epochs, trainer.batch_size, trainer.device, trainer.precision, "
                                     "trainer.resume"),
    "report": ("the diagnosis's thresholds, the plots, the training-health probes, a quality gate",
               "report.target_error, report.tolerance, report.alpha, report.probe_every, report.fail_on"),
    "shift": ("a distribution shift planted in the test split, to see the report catch it",
              "shift.severity, shift.fraction"),
    "experiment": ("a preset over the whole config, from conf/experiment/ or your --config-dir", ""),
    "debug": ("a smoke test of the whole pipeline in seconds", ""),
    "hparams_search": ("a hyper-parameter search, with -m (pip install 'dlrun[optuna]')", ""),
    "hydra/launcher": ("where -m runs its jobs (unset: Hydra's basic launcher, one job after another)", ""),
    "logger": ("where the run is logged besides its folder, one or more: logger=[tensorboard,mlflow]", ""),
}

HELP_USAGE = """dlrun: train a PyTorch model, then write a diagnostic report into the run folder (report.md, report.html,
report.json, plots/): underfitting, overfitting, data mismatch, distribution shift, and the next command to run.

usage: dlrun [GROUP=OPTION ...] [KEY=VALUE ...]   one run, in outputs/DATE/TIME (or hydra.run.dir=PATH)
       dlrun -m KEY=A,B [...]                    a sweep, one run per combination, in multirun/DATE/TIME
       dlrun --cfg job [...]                     print the composed config, every key with its value; run nothing
"""

HELP_END = """Set any key of the config on the command line: reg.dropout=0.5 optim.lr=3e-4 (dlrun --cfg job lists them).
Rebuild a run's report without training: dlrun-report RUN_DIR. Hydra's own flags: dlrun --hydra-help."""


def help_text(conf_dir: str, config_dirs: list[str]) -> str:
    """`dlrun --help`: the usage, then each config group: its options (* the default), what it sets, its main keys."""
    import textwrap

    import yaml

    defaults: dict[str, list] = {}  # group: its default options (a list for a group like logger=[a,b])
    for item in (yaml.safe_load((Path(conf_dir) / "config.yaml").read_text()) or {}).get("defaults", []):
        if isinstance(item, dict):
            defaults.update({str(group): option if isinstance(option, list) else [option]
                             for group, option in item.items()})
    groups: dict[str, set[str]] = {}
    for root in (Path(conf_dir), *map(Path, config_dirs)):
        for path in root.rglob("*.yaml"):
            if path.parent != root:  # root holds the primary config, each folder below it a group
                groups.setdefault(path.parent.relative_to(root).as_posix(), set()).add(path.stem)
    lines = [HELP_USAGE, "Config groups, GROUP=OPTION (* the default): what each sets, its main keys (KEY=VALUE)"]
    for group in [*GROUP_HELP, *sorted(set(groups) - set(GROUP_HELP))]:
        if group in groups:
            options = ", ".join(f"{o}*" if o in defaults.get(group, []) else o for o in sorted(groups[group]))
            what, keys = GROUP_HELP.get(group, ("", ""))
            lines.append(textwrap.fill(f"{group}: {options}", 116, initial_indent="  ", subsequent_indent="    "))
            lines += [f"      {text}" for text in (what, keys and f"keys: {keys}") if text]
    return "\n".join([*lines, "", HELP_END])
