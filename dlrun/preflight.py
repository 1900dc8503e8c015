"""Check command-line overrides against the schema before Hydra composes, so that a misspelt key names the
keys it could have been (Hydra alone says "Key 'droput' is not in struct" without listing them)."""

from __future__ import annotations

import difflib
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, Optional

from dlrun.config import SCHEMAS, Config
from dlrun.errors import DlrunError


def _default_options(conf_dir: str) -> dict[str, str]:
    """group -> option chosen by conf/config.yaml's defaults list."""
    import yaml

    text = (Path(conf_dir) / "config.yaml").read_text()
    chosen = {}
    for item in yaml.safe_load(text).get("defaults", []):
        if isinstance(item, dict):
            chosen.update({str(k): str(v) for k, v in item.items()})
    return chosen


def _schema_of(group: str, option: str, conf_dir: str) -> Optional[type]:
    """The dataclass that conf/GROUP/OPTION.yaml extends, or None if unknown (a user's --config-dir group)."""
    import yaml

    path = Path(conf_dir) / group / f"{option}.yaml"
    if not path.is_file():
        return None
    defaults = (yaml.safe_load(path.read_text()) or {}).get("defaults", [])
    for name in defaults:
        if isinstance(name, str) and name in SCHEMAS.get(group, {}):
            return SCHEMAS[group][name]
    return None


def _options(group: str, conf_dir: str) -> list[str]:
    return sorted(p.stem for p in (Path(conf_dir) / group).glob("*.yaml"))


_BOOLS = {"true", "false", "yes", "no", "on", "off", "1", "0"}


def _check_value(node: type, name: str, value: str, full: str) -> None:
    """Reject a value the field's type cannot hold, naming the key and the expected type."""
    import typing

    hint = typing.get_type_hints(node)[name]
    optional = type(None) in typing.get_args(hint)
    if optional:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if value.lower() in ("null", "none") and optional:
        return
    if value.startswith("${"):
        return  # an interpolation: OmegaConf resolves it
    kinds = {int: "an integer", float: "a number", bool: "true or false"}
    if hint not in kinds:
        return
    ok = True
    try:
        if hint is int:
            ok = float(value) == int(float(value)) and "." not in value and "e" not in value.lower()
        elif hint is float:
            float(value)
        else:
            ok = value.lower() in _BOOLS
    except ValueError:
        ok = False
    if not ok:
        extra = " or null" if optional else ""
        raise DlrunError(f"{full}={value!r}: expected {kinds[hint]}{extra}")


def _check_path(node: type, parts: list[str], full: str, value: str) -> None:
    names = [f.name for f in fields(node)]
    head = parts[0]
    if head not in names:
        prefix = full[: len(full) - len(".".join(parts))]
        close = difflib.get_close_matches(head, names, n=1)
        hint = f" Did you mean {prefix}{close[0]}?" if close else ""
        raise DlrunError(f"unknown key {full!r}.{hint} Keys of {prefix.rstrip('.') or 'the config'}: "
                         f"{', '.join(names)}")
    if len(parts) > 1:
        sub = _resolve(node, head)
        if sub is not None:
            _check_path(sub, parts[1:], full, value)
    elif "," not in value:  # a multirun sweep list is checked per job by Hydra
        _check_value(node, head, value, full)


def _resolve(node: type, name: str) -> Optional[type]:
    value = next(f for f in fields(node) if f.name == name)
    default: Any = value.default_factory() if callable(value.default_factory) else value.default  # type: ignore[misc]
    return type(default) if is_dataclass(default) else None


def check_overrides(argv: list[str], conf_dir: str) -> None:
    """Raise DlrunError for `group.key=value` overrides whose key the selected option's schema lacks."""
    if any(a in ("-h", "--help", "--hydra-help") for a in argv) or any(a.startswith("--config-dir") or a == "-cd"
                                                                        for a in argv):
        return  # a user's own config dir may add options we cannot see; Hydra will check
    pairs = [a.split("=", 1) for a in argv if "=" in a and not a.startswith("-")]
    if ["hydra/launcher", "slurm"] in pairs:
        import importlib.util

        if importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None:
            raise DlrunError("hydra/launcher=slurm needs Hydra's submitit launcher: pip install 'dlrun[slurm]' "
                             "(hydra-submitit-launcher)")
    options = _default_options(conf_dir)
    groups = {f.name for f in fields(Config)}
    for key, value in pairs:
        if key in groups:
            for option in value.split(","):
                if option not in _options(key, conf_dir):
                    raise DlrunError(f"{key}={option!r} is not an option, expected one of "
                                     f"{', '.join(_options(key, conf_dir))}")
            if "," not in value:
                options[key] = value
    for key, value in pairs:
        if key.startswith(("+", "~", "hydra.", "hydra/")) or "." not in key or "/" in key:
            continue
        group, rest = key.split(".", 1)
        if group not in groups:
            raise DlrunError(f"unknown group {group!r} in {key!r}, expected one of {', '.join(sorted(groups))}")
        schema = _schema_of(group, options.get(group, ""), conf_dir)
        if schema is not None:
            _check_path(schema, rest.split("."), key, value)
