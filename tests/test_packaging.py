"""An installed (non-editable) wheel carries conf/ and finds it."""

from __future__ import annotations

import subprocess
import sys
import zipfile

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def test_wheel_ships_the_config_tree_and_the_cli_finds_it(tmp_path):
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"),
                            str(ROOT)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    wheel = next((tmp_path / "dist").glob("dlrun-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "dlrun/conf/config.yaml" in names and "dlrun/conf/model/mlp.yaml" in names
    assert "dlrun/report/templates/report.html.j2" in names
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import dlrun.cli as cli; "
            "assert cli.__file__.startswith(sys.argv[1]), cli.__file__; print(cli.CONF_DIR)")
    out = subprocess.run([sys.executable, "-c", code, str(site)], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(site / "dlrun" / "conf")
    composed = subprocess.run([sys.executable, "-c",
                               "import sys; sys.path.insert(0, sys.argv[1]); sys.argv = ['dlrun', '--cfg', 'job']; "
                               "from dlrun.cli import main; main()", str(site)],
                              capture_output=True, text=True, cwd=tmp_path)
    assert composed.returncode == 0 and "family: mlp" in composed.stdout, composed.stderr
