"""`dlrun --help`: every config group of conf/ with its options, what it sets and its main keys; no *_schema entry
(those are ConfigStore internals, not options); answered before Hydra composes a config, without importing torch."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import fields, is_dataclass

import pytest

from dlrun.help import GROUP_HELP
from dlrun.config import SCHEMAS
from tests.conftest import CONF_DIR, run_dlrun


@pytest.fixture(scope="module")
def help_text(tmp_path_factory) -> str:
    done = run_dlrun(["--help"], tmp_path_factory.mktemp("help"))
    assert done.returncode == 0, done.stderr
    return done.stdout


def _groups() -> dict[str, list[str]]:
    """conf/'s groups (a folder of yaml files) and their options."""
    out: dict[str, list[str]] = {}
    for path in CONF_DIR.rglob("*.yaml"):
        if path.parent != CONF_DIR:
            out.setdefault(path.parent.relative_to(CONF_DIR).as_posix(), []).append(path.stem)
    return out


def test_help_lists_every_group_and_option_and_no_schema(help_text):
    assert "_schema" not in help_text
    for group, options in _groups().items():
        match = re.search(rf"(?m)^  {re.escape(group)}: (.*(?:\n    \S.*)*)", help_text)  # a long list wraps
        assert match, f"group {group} is not listed"
        assert set(options) <= {o.strip(" *\n") for o in match.group(1).split(",")}, group
    assert "mlp*" in help_text and "digits*" in help_text and "adam*" in help_text  # the defaults, marked


def test_every_group_has_a_description_and_its_keys_exist(help_text):
    assert set(_groups()) <= set(GROUP_HELP), "a conf/ group without a line in dlrun.help.GROUP_HELP"
    for group, (what, keys) in GROUP_HELP.items():
        if group in _groups():
            assert what in help_text and (not keys or f"keys: {keys}" in help_text)
        for key in filter(None, keys.split(", ")):
            assert _is_field(key), f"{group}: {key} is no field of the {key.split('.')[0]} schemas in dlrun/config.py"


def _is_field(key: str) -> bool:
    """True if some schema of the key's group has this (possibly nested) field: reg.augment.noise."""
    group, *path = key.split(".")
    for schema in SCHEMAS.get(group, {}).values():
        node = schema
        for name in path:
            found = {f.name: f for f in fields(node)}.get(name) if is_dataclass(node) else None
            if found is None:
                break
            node = found.default_factory() if callable(found.default_factory) else found.default
        else:
            return True
    return False


def test_help_lists_the_groups_of_a_users_config_dir(tmp_path):
    (tmp_path / "mine" / "experiment").mkdir(parents=True)
    (tmp_path / "mine" / "experiment" / "my_preset.yaml").write_text("# @package _global_\n")
    done = run_dlrun(["--config-dir", str(tmp_path / "mine"), "--help"], tmp_path)
    assert done.returncode == 0 and "my_preset" in done.stdout


def test_help_imports_no_heavy_module():
    code = ("import sys; sys.argv = ['dlrun', '--help']; import dlrun.cli; dlrun.cli.main(); "
            "heavy = ('torch', 'torchvision', 'matplotlib', 'scipy', 'sklearn'); "
            "print('loaded:', [m for m in heavy if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("loaded: []")
