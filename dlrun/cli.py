"""The `dlrun` command: a Hydra app that validates the config, runs it, and prints user errors in one line.

Nothing heavy is imported here: `dlrun --help` and composing a config never import torch (tests/test_cli.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from dlrun.config import register_configs, validate
from dlrun.errors import DlrunError


def _conf_dir() -> str:
    """The packaged dlrun/conf in an installed wheel, else the repository's conf/ next to the package."""
    packaged = Path(__file__).resolve().parent / "conf"
    return str(packaged if packaged.is_dir() else packaged.parent.parent / "conf")


CONF_DIR = _conf_dir()
register_configs()


def _fail(message: str, code: int = 2) -> None:
    from rich.console import Console

    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]dlrun error:[/] {message}", markup=True)
    sys.exit(code)


@hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
def app(cfg: DictConfig) -> float | None:
    try:
        validate(cfg)
        from hydra.core.hydra_config import HydraConfig

        from dlrun import console
        from dlrun.pipeline import run

        hc = HydraConfig.get()
        plain = OmegaConf.to_object(cfg)
        result = run(plain, Path(hc.runtime.output_dir), overrides=list(hc.overrides.task),
                     ui=console.TerminalUI(plain.trainer.progress))
    except DlrunError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        _fail(str(err))
        return None
    if result.exit_code:
        sys.exit(result.exit_code)
    return result.objective


def main() -> None:
    from dlrun.preflight import check_overrides

    try:
        check_overrides(sys.argv[1:], CONF_DIR)
    except DlrunError as err:
        _fail(str(err))
    app()
