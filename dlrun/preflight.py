"""Check a command line before anything runs, with Hydra's own composition, and say what was wrong in one line.

One mechanism: the command line is composed exactly as `@hydra.main` will compose it (the same config dirs,
`--config-dir` included, the same overrides; in a multirun, every sweep point), and what Hydra or OmegaConf raise
is turned into a DlrunError that names the key, the value and what is allowed, with a "did you mean" from the
structured config node (the dataclasses in dlrun/config.py). Composition also lets `+key=value` add keys a schema
lacks; those are refused here too. Then `validate()` runs on each composed config. torch is never imported.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, Optional

from dlrun.config import Config, register_configs, validate
from dlrun.errors import DlrunError

# Hydra's flags that take a value, and those that make the command do something other than run (nothing to check)
_VALUE_FLAGS = {"--config-dir", "-cd", "--config-name", "-cn", "--config-path", "-cp", "--cfg", "-c", "--package",
                "-p", "--experimental-rerun"}
_NO_RUN_FLAGS = {"-h", "--help", "--hydra-help", "--info", "-i", "--shell-completion", "-sc", "--version"}
# Hydra's modes, of which a command line may hold one
_MODES = {"-r", "--run", "-m", "--multirun", "-c", "--cfg", "-i", "--info", "-sc", "--shell-completion"}
# a multirun with more points than this is checked value by value (each swept value once), not point by point
MAX_POINTS = 256


class CommandLine:
    """The parts of a dlrun/Hydra command line that decide the composed config."""

    def __init__(self, argv: list[str]):
        self.overrides: list[str] = []
        self.config_dirs: list[str] = []
        self.config_name = "config"
        self.multirun = False
        self.skip = False
        args = iter(argv)
        for arg in args:
            flag, _, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
            if arg in _NO_RUN_FLAGS or flag in _NO_RUN_FLAGS:
                self.skip = True
            elif arg in ("-m", "--multirun"):
                self.multirun = True
            elif flag in _VALUE_FLAGS:
                value = inline or next(args, "")
                if flag in ("--config-dir", "-cd"):
                    self.config_dirs.append(str(Path(value).expanduser().resolve()))
                elif flag in ("--config-name", "-cn"):
                    self.config_name = value
            elif not arg.startswith("-"):
                self.overrides.append(arg)

    def compose_overrides(self, overrides: list[str]) -> list[str]:
        """The overrides plus the user's --config-dir as Hydra's search path (as the flag itself does)."""
        if not self.config_dirs:
            return overrides
        return [*overrides, "hydra.searchpath=[" + ",".join(f"file://{d}" for d in self.config_dirs) + "]"]


def check_command_line(argv: list[str], conf_dir: str) -> Optional[Any]:
    """Compose and validate what `dlrun ARGV` would run; raise DlrunError with one clear line if anything is wrong.

    Returns the composed config of a single run (None for a multirun or a command that does not run)."""
    line = CommandLine(argv)
    for folder in line.config_dirs:
        if not Path(folder).is_dir():
            raise DlrunError(f"--config-dir {folder}: no such folder (give a folder of config groups, such as "
                             "DIR/experiment/mine.yaml)")
    modes = [a for a in argv if a.split("=", 1)[0] in _MODES]
    if len(modes) > 1:  # Hydra would raise a ValueError with a traceback
        raise DlrunError(f"{modes[0]} and {modes[1]} do not go together: Hydra does one of --run, --multirun (-m), "
                         "--cfg, --info and --shell-completion at a time (--cfg job prints one job's config: give one "
                         "value per key, without -m)")
    if line.skip:
        return None
    _check_launcher(line.overrides)
    if not line.multirun:
        return compose_checked(line.overrides, conf_dir, line)
    _check_points(_sweep_points(line.overrides), conf_dir, line)
    return None


def _check_points(points: list[list[str]], conf_dir: str, line: CommandLine) -> None:
    """Every sweep point, quickly: a full composition (~0.4 s) once per distinct choice of config groups, then each
    point's values applied to a copy the way Hydra applies command-line values after composing (a few ms). Whatever
    fails there is composed in full again, so its message is exactly the single-run one."""
    import copy

    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    groups = _group_names(conf_dir, line)
    bases: dict[tuple, Any] = {}
    for point in points:
        is_choice = [_is_choice(item, groups) for item in point]
        choice = tuple(item for item, chosen in zip(point, is_choice) if chosen)
        values = [item for item, chosen in zip(point, is_choice) if not chosen]
        if choice not in bases:  # unchecked: a key the option requires (dataset.path) may come with the point's values
            try:
                bases[choice] = compose_checked(list(choice), conf_dir, line, check=False)
            except DlrunError:
                bases[choice] = None
        try:
            if bases[choice] is None:
                raise LookupError(choice)
            cfg = copy.deepcopy(bases[choice])
            ConfigLoaderImpl._apply_overrides_to_config(_parse(values), cfg)
            _check_added_keys(cfg)
            _check_missing_values(cfg)
            validate(cfg)
        except Exception:  # noqa: BLE001 - the slow path gives the one-line message of a single run
            try:
                compose_checked(point, conf_dir, line)
            except DlrunError as err:  # which of the sweep's jobs: a key may be wrong for one model only
                raise DlrunError(f"{err} (in the sweep's job {' '.join(point)})") from None


def _group_names(conf_dir: str, line: CommandLine) -> set[str]:
    """The config groups a command line can choose from: the folders of conf/ and of every --config-dir."""
    names = set()
    for root in (Path(conf_dir), *map(Path, line.config_dirs)):
        names.update(p.parent.relative_to(root).as_posix() for p in root.rglob("*.yaml") if p.parent != root)
    return names


def _is_choice(item: str, groups: set[str]) -> bool:
    """An override that selects a config (model=vgg, +experiment=x, hydra/launcher=joblib) or sets Hydra's own
    config: these change what is composed; the rest are values applied after it."""
    key = item.split("=", 1)[0].lstrip("+~").split("@", 1)[0]
    return key in groups or key.startswith("hydra")


def compose_checked(overrides: list[str], conf_dir: str, line: Optional[CommandLine] = None,
                    check: bool = True) -> Any:
    """compose() + the schema check of added keys + validate(), every failure as one DlrunError line (check=False:
    compose only, for a base that values are applied to later)."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    line = line or CommandLine([])
    _parse(overrides)
    register_configs()  # the schemas the yaml files extend (idempotent)
    try:
        with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
            cfg = compose(line.config_name, overrides=line.compose_overrides(overrides))
    except (HydraException, OmegaConfBaseException) as err:
        raise DlrunError(_explain(err, overrides, conf_dir, line)) from None
    except AssertionError:  # OmegaConf, on a key below a None node: a logger that logger=[...] does not select
        keys = [o.split("=", 1)[0].lstrip("+~") for o in overrides if o.lstrip("+~").startswith("logger.")]
        chosen = next((o.split("=", 1)[1] for o in reversed(overrides) if o.startswith("logger=")), "[tensorboard]")
        key = next((k for k in keys if k.split(".")[1] not in chosen), None)
        if key is None:
            raise
        raise DlrunError(f"{key} sets the {key.split('.')[1]} logger, which logger={chosen} does not select: add it "
                         "to the list, e.g. logger=[tensorboard,mlflow]") from None
    if not check:
        return cfg
    _check_added_keys(cfg)
    _check_missing_values(cfg)
    validate(cfg)
    return cfg


def _check_missing_values(cfg: Any) -> None:
    """Keys the chosen option requires (`???` in the schema), e.g. dataset.path for dataset=tabular."""
    from omegaconf import OmegaConf

    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        options = ", ".join(f"{key}=..." for key in missing)
        raise DlrunError(f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required here and not set: "
                         f"add {options} to the command line")


# ----------------------------------------------------------------------------------------------------------------------
# the command line


def _parse(overrides: list[str]) -> list:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    for item in overrides:  # one at a time, to name the one that does not parse
        try:
            parser.parse_overrides([item])
        except OverrideParseException as err:
            raise DlrunError(f"cannot read the override {item!r}: {_first_line(err)} (the syntax: key=value, "
                             "lists as key=[a,b], sweeps with -m as key=a,b)") from None
    return parser.parse_overrides(overrides)


def _grid(overrides: list[str]) -> Optional[list[list[str]]]:
    """Every point of a basic sweep, in job-number order, as Hydra's BasicSweeper makes them; None for a search
    (another hydra/sweeper, such as Optuna), whose jobs are not known in advance."""
    if any(o.split("=", 1)[0] == "hydra/sweeper" and o.split("=", 1)[1] != "basic" for o in overrides):
        return None
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    return [p for batch in BasicSweeper.split_arguments(_parse(overrides), None) for p in batch]


def _sweep_points(overrides: list[str]) -> list[list[str]]:
    """Every point of a basic multirun sweep; past MAX_POINTS, each swept value once with the others' first values."""
    points = _grid(overrides)
    if points is None:
        return [[o for o in overrides if not _parse([o])[0].is_sweep_override()]]  # a search space, not a grid
    if len(points) <= MAX_POINTS:
        return points
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    parsed = _parse(overrides)
    first = points[0]
    singles = []
    for i, override in enumerate(parsed):
        if override.is_sweep_override():
            for point in BasicSweeper.split_arguments([override], None)[0]:
                singles.append([*first[:i], point[0], *first[i + 1:]])
    return singles


def job_overrides(overrides: list[str]) -> Optional[list[list[str]]]:
    """The task overrides of each job of a basic sweep, in job-number order and as Hydra saves them in the job's
    .hydra/overrides.yaml (hydra.* left out); None for a search (Optuna), whose jobs are not known in advance."""
    points = _grid(overrides)
    return None if points is None else [[o for o in p if not o.lstrip("+~").startswith("hydra")] for p in points]


def _check_launcher(overrides: list[str]) -> None:
    if "hydra/launcher=slurm" in overrides:
        import importlib.util

        if importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None:
            raise DlrunError("hydra/launcher=slurm needs Hydra's submitit launcher: pip install 'dlrun[slurm]' "
                             "(hydra-submitit-launcher)")


# ----------------------------------------------------------------------------------------------------------------------
# Hydra's and OmegaConf's exceptions, in the user's words


def _first_line(err: BaseException) -> str:
    """The message's first line, with the next one when the first only announces it ("... composing config:")."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    return f"{lines[0]} {lines[1]}" if lines[0].endswith(":") and len(lines) > 1 else lines[0]


def _explain(err: BaseException, overrides: list[str], conf_dir: str, line: CommandLine) -> str:
    from hydra.errors import MissingConfigException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

    cause = err.__cause__ or err
    if isinstance(err, MissingConfigException) or re.search(r"Could not (find|load) '", str(err)):
        return _missing_option(str(err), conf_dir, line)
    full_key = getattr(cause, "full_key", None)
    if full_key and "." not in full_key:  # an unknown group fails at its first part: name the whole key
        full_key = next((k for k in (o.split("=", 1)[0].lstrip("+~") for o in overrides)
                         if k.startswith(f"{full_key}.")), full_key)
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and full_key:
        return _unknown_key(full_key, getattr(cause, "object_type", None))
    if isinstance(cause, ValidationError) and full_key:
        said = re.search(r"Value '(.*?)'", str(cause))
        value = said.group(1) if said else _value_of(full_key, overrides)
        if "is not Optional" in str(cause):
            value = "null"  # the value at fault, not the key's last one on the command line
        return f"{full_key}={value!r}: expected {_expected(str(cause))}"
    text = str(err)
    if "does not support deletion" in text + str(cause):
        key = full_key or next((o.lstrip("~").split("=", 1)[0] for o in overrides if o.startswith("~")), "?")
        return (f"~{key}: a key of a group cannot be deleted (the schema gives each one a value); set it with "
                f"{key}=VALUE, or leave it out for its default")
    present = re.search(r"An item is already at '([^']+)'", text)
    if present:  # `+key=v` for a key the config already has
        key = present.group(1)
        return f"+{key}: the key exists already, the '+' adds new keys only; set it with {key}={_value_of(key, overrides)}"
    twice = re.search(r"Multiple values for ([\w/.@-]+)\.", text)
    if twice:  # `+group=option` for a group the defaults already choose
        group = twice.group(1)
        return (f"+{group}: {group} has an option already (the '+' is for a group with none yet); choose another "
                f"with {group}={_value_of(group, overrides)}")
    if "Ambiguous value" in text or "--multirun" in text:
        sweep = next((o for o in overrides if "," in o.split("=", 1)[-1]), "")
        return (f"{sweep or 'the command line'} is a sweep: add -m (--multirun) to run one job per value; a value "
                "that contains a comma is quoted, e.g. 'dataset.path=\"a,b.csv\"'")
    key = re.search(r"override '([^']+)'", text)
    where = key.group(1) if key else full_key
    return f"{where + ': ' if where else ''}{_first_line(cause)}"


def _value_of(full_key: str, overrides: list[str]) -> str:
    for item in reversed(overrides):
        key, _, value = item.partition("=")
        if key.lstrip("+~") == full_key:
            return value
    return "?"


def _expected(message: str) -> str:
    if "is not a ListConfig, list or tuple" in message:
        return "a list such as [64,32] ([] for none)"
    if "is not Optional" in message:
        return "a value: this key cannot be null"
    if "to Integer" in message:
        return "an integer"
    if "to Float" in message:
        return "a number"
    if "valid bool" in message:
        return "true or false"
    if "to String" in message:
        return "a string"
    return _first_line(DlrunError(message)).rstrip(".")


def _missing_option(message: str, conf_dir: str, line: CommandLine) -> str:
    """`group=option` that no config dir or installed Hydra plugin provides; Hydra's message lists what exists."""
    found = re.search(r"Could not (?:find|load) '(.+)/([^'/]*)'", message)  # load: an option in a list
    if not found:
        return _first_line(DlrunError(message))
    group, option = found.groups()
    listed = message.split("Available options in", 1)[1].splitlines()[1:] if "Available options in" in message else []
    listed = listed[:next((i for i, o in enumerate(listed) if not o.startswith("\t")), len(listed))]  # one per line
    options = sorted({o.strip() for o in listed if o.strip() and not o.strip().endswith("_schema")})
    if not options:
        options = sorted({p.stem for d in [conf_dir, *line.config_dirs] for p in (Path(d) / group).glob("*.yaml")
                          if not p.stem.endswith("_schema")})
    if not options:
        return f"{group}={option!r}: there is no config group {group!r} (a --config-dir adds groups)"
    close = difflib.get_close_matches(option, options, n=1)
    hint = f" Did you mean {group}={close[0]}?" if close else ""
    plugin = " (a launcher or sweeper may need its Hydra plugin installed)" if group.startswith("hydra/") else ""
    return f"{group}={option!r} is not an option, expected one of {', '.join(options)}.{hint}{plugin}"


def _leaf_paths(node: type, prefix: str = "") -> list[str]:
    """Every dotted key below a dataclass, e.g. trainer.seed, reg.augment.noise."""
    out = []
    for f in fields(node):
        default = f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]
        path = f"{prefix}{f.name}"
        out.extend(_leaf_paths(type(default), f"{path}.") if is_dataclass(default) else [path])
    return out


def _every_key() -> list[str]:
    from dlrun.config import SCHEMAS

    keys = set()
    for group, schemas in SCHEMAS.items():
        for schema in schemas.values():
            keys.update(f"{group}.{k}" for k in _leaf_paths(schema))
    return sorted(keys)


def _unknown_key(full_key: str, node_type: Optional[type]) -> str:
    """'unknown key ...' with the closest key of the same node, or across all groups for a top-level key."""
    parts = full_key.split(".")
    prefix = ".".join(parts[:-1])
    if node_type is None or not is_dataclass(node_type) or node_type is Config:
        if len(parts) > 1:  # an unknown group, e.g. foo.bar
            groups = [f.name for f in fields(Config)]
            close = difflib.get_close_matches(parts[0], groups, n=1)
            hint = f" Did you mean {close[0]}?" if close else ""
            return f"unknown group {parts[0]!r} in {full_key!r}.{hint} Groups: {', '.join(groups)}"
        every = _every_key()
        # trainer's keys first: `seed` most often means trainer.seed
        by_leaf = sorted((k for k in every if k.rsplit(".", 1)[-1] == full_key),
                         key=lambda k: (not k.startswith("trainer."), k))
        close = by_leaf or difflib.get_close_matches(full_key, every, n=1)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        return (f"unknown key {full_key!r}: every key belongs to a group.{hint} Groups: "
                f"{', '.join(f.name for f in fields(Config))}")
    names = [f.name for f in fields(node_type)]
    close = difflib.get_close_matches(parts[-1], names, n=1)
    hint = f" Did you mean {prefix}.{close[0]}?" if close else ""
    return f"unknown key {full_key!r}.{hint} Keys of {prefix}: {', '.join(names)}"


def _check_added_keys(cfg: Any) -> None:
    """`+key=value` adds a key even where the schema has none, and dlrun would silently ignore it: refuse it."""
    from omegaconf import DictConfig, OmegaConf

    def walk(node: Any, prefix: str, node_type: Optional[type]) -> None:
        if not isinstance(node, DictConfig):
            return
        names = {f.name for f in fields(node_type)} if node_type is not None and is_dataclass(node_type) else None
        for key in node.keys():
            path = f"{prefix}{key}"
            if names is not None and key not in names:
                raise DlrunError(_unknown_key(path, node_type).replace("unknown key", "unknown key (added with +)", 1))
            child = node._get_node(key)
            if isinstance(child, DictConfig):
                walk(child, f"{path}.", OmegaConf.get_type(child))

    walk(cfg, "", Config)
