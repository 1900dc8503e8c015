"""Compose a sweep's jobs once per choice of config groups, as Hydra would compose each of them.

Hydra's basic sweeper composes every job twice (once to check the batch, once to launch it), about 0.1 s each with
dlrun's config groups and schemas: as long as a default digits run trains. Most of that is the defaults list and
the merge of the config files, and a sweep over values (`dlrun -m trainer.seed=0,1,2 reg.dropout=0,0.5`) has the
same defaults list for every job. Hydra's own composition (`ConfigLoaderImpl._load_configuration_impl`) is two
steps: compose the defaults list chosen by the group overrides, then apply the other overrides to the result in
command-line order. `ComposeOncePerChoice` memoises the first step per choice of groups and repeats the second on a
copy, then fills in what Hydra records about the overrides (hydra.overrides, hydra.job.override_dirname).

The split of overrides is Hydra's own rule (hydra/_internal/defaults_list.py `Overrides`): an override whose key is
an existing config group and whose value is not a dict chooses a config; every other one is applied after
composing. Anything else falls back to Hydra's full composition: a job whose values fail to apply (Hydra then
raises its own error), a sweep that varies `hydra.*` values (which `_load_configuration_impl` reads while it
composes), a Hydra whose private helper this uses has changed. tests/sweep/test_compose.py checks that the result
equals Hydra's for every kind of override.

The sweep callback (dlrun/sweep/callback.py) gives it to the Hydra app at the start of a multirun, before the
sweeper is set up: the basic and Optuna sweepers and the basic, joblib and submitit launchers all compose through it.
"""

from __future__ import annotations

import copy
import logging
from collections import OrderedDict
from typing import Any, List, Optional

from hydra.core.config_loader import ConfigLoader
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)

MAX_BASES = 32  # distinct choices of config groups kept (a grid over model x dataset has a few)


class ComposeOncePerChoice(ConfigLoader):
    """A ConfigLoader that answers `load_sweep_config` from one composition per choice of config groups and
    passes every other call to Hydra's loader. Pickled (joblib, submitit) without its memo."""

    def __init__(self, inner: ConfigLoader) -> None:
        self.inner = inner
        self._bases: OrderedDict[tuple, DictConfig] = OrderedDict()
        self.compositions = 0  # full compositions done, for tests
        self.in_full: list[list[str]] = []  # the jobs composed in full by Hydra (the fallback), for tests

    def __getstate__(self) -> dict:
        return {"inner": self.inner, "_bases": OrderedDict(), "compositions": 0, "in_full": []}

    # ------------------------------------------------------------------------------------------------------------------
    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: List[str]) -> DictConfig:
        try:
            cfg = self._from_base(master_config, list(sweep_overrides))
        except Exception:  # noqa: BLE001 - Hydra's full composition, which raises its own message if this is an error
            log.debug("composing %s in full", sweep_overrides, exc_info=True)
            cfg = None
        if cfg is None:
            self.compositions += 1
            self.in_full.append(list(sweep_overrides))
            return self.inner.load_sweep_config(master_config, list(sweep_overrides))
        return cfg

    def _from_base(self, master: DictConfig, sweep_overrides: list[str]) -> Optional[DictConfig]:
        from hydra._internal.config_loader_impl import ConfigLoaderImpl

        config_name = master.hydra.job.config_name
        master_overrides = list(OmegaConf.to_container(master.hydra.overrides.hydra))
        split = getattr(self.inner, "_parse_overrides_and_create_caching_repo", None)
        if split is None:  # not Hydra's ConfigLoaderImpl, or a Hydra that changed it
            return None
        parsed, repo = split(config_name, master_overrides + sweep_overrides)
        if any(o.is_sweep_override() for o in parsed):
            return None  # Hydra refuses these in a job: let it say so
        choices, values = [], []
        for o in parsed[len(master_overrides):]:
            chooses = repo.group_exists(o.key_or_group) and not isinstance(o.value(), dict)
            (choices if chooses else values).append(o)
        if any(o.is_hydra_override() for o in values):
            return None  # hydra.* values are read while composing (env_copy, searchpath): compose them in full
        chosen = [o.input_line for o in choices]
        key = (config_name, tuple(master_overrides), tuple(chosen))
        base = self._bases.get(key)
        if base is None:
            base = self.inner.load_sweep_config(master, chosen)
            self.compositions += 1
            self._bases[key] = base
            if len(self._bases) > MAX_BASES:
                self._bases.popitem(last=False)
        else:
            self._bases.move_to_end(key)
        cfg = copy.deepcopy(base)
        ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
        # what _load_configuration_impl records after applying the overrides, in command-line order
        task = [o for o in parsed if not o.is_hydra_override()]
        with open_dict(cfg.hydra):
            cfg.hydra.overrides.hydra = [o.input_line for o in parsed if o.is_hydra_override()]
            cfg.hydra.overrides.task = [o.input_line for o in task]
            cfg.hydra.job.override_dirname = _override_dirname(task, cfg)
        OmegaConf.copy_cache(from_config=master, to_config=cfg)
        return cfg

    # ------------------------------------------------------------------------------------------------------------------
    # everything else is Hydra's
    def load_configuration(self, config_name: Optional[str], overrides: List[str], run_mode: RunMode,
                           from_shell: bool = True, validate_sweep_overrides: bool = True) -> DictConfig:
        return self.inner.load_configuration(config_name, overrides, run_mode, from_shell=from_shell,
                                             validate_sweep_overrides=validate_sweep_overrides)

    def get_search_path(self) -> Any:
        return self.inner.get_search_path()

    def get_sources(self) -> Any:
        return self.inner.get_sources()

    def list_groups(self, parent_name: str) -> List[str]:
        return self.inner.list_groups(parent_name)

    def get_group_options(self, *args: Any, **kwargs: Any) -> List[str]:
        return self.inner.get_group_options(*args, **kwargs)

    def compute_defaults_list(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.compute_defaults_list(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:  # e.g. ConfigLoaderImpl.repository
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


def _override_dirname(task: list, cfg: DictConfig) -> str:
    from hydra._internal.config_loader_impl import get_overrides_dirname

    options = cfg.hydra.job.config.override_dirname
    return get_overrides_dirname(overrides=task, kv_sep=options.kv_sep, item_sep=options.item_sep,
                                 exclude_keys=options.exclude_keys)
