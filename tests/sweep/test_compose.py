"""dlrun's sweeper composes a sweep's jobs once per choice of config groups (dlrun/sweep/compose.py): each job's
config must be exactly what Hydra's own composition gives, for every kind of override, and a job Hydra refuses
must be refused with Hydra's own error."""

from __future__ import annotations

import pickle

import pytest
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.utils import create_config_search_path
from hydra.types import RunMode
from omegaconf import OmegaConf

from dlrun.config import register_configs
from dlrun.sweep.compose import ComposeOncePerChoice
from tests.conftest import CONF_DIR


@pytest.fixture(scope="module")
def hydra_loader():
    register_configs()
    return ConfigLoaderImpl(config_search_path=create_config_search_path(str(CONF_DIR)))


def master_config(loader, tmp_path, extra=()):
    """The multirun's own config, as Hydra composes it before sweeping (the sweep itself is in the job overrides)."""
    return loader.load_configuration("config", [f"hydra.sweep.dir={tmp_path}", "hydra.job.chdir=false", *extra],
                                     run_mode=RunMode.MULTIRUN)


def same(a, b) -> None:
    assert OmegaConf.to_container(a, resolve=False) == OmegaConf.to_container(b, resolve=False)
    assert OmegaConf.is_struct(a) == OmegaConf.is_struct(b)
    assert OmegaConf.is_readonly(a.hydra) == OmegaConf.is_readonly(b.hydra)


POINTS = [
    ["trainer.seed=3"],
    ["trainer.seed=4", "reg.dropout=0.25"],
    ["reg.dropout=0.5", "trainer.seed=4"],  # the order is recorded in hydra.overrides.task and override_dirname
    ["model.hidden=[64,32]", "trainer.seed=1"],  # a list value
    ["model=vgg", "trainer.seed=1"],  # a choice of group: its own base
    ["trainer.seed=2", "model=vgg", "reg.dropout=0.1"],  # a choice after a value
    ["optim=sgd", "optim.lr=0.5", "model=lenet"],
    ["reg={dropout: 0.3}", "trainer.seed=0"],  # a dict value is applied after composing (Hydra's rule)
    ["experiment=overfit_demo", "trainer.seed=5"],  # a preset that sets values itself, then a value over it
    ["experiment=overfit_demo", "trainer.max_epochs=7"],
    ["logger=[]", "trainer.seed=1"],
    ["hydra/job_logging=disabled", "trainer.seed=1"],  # a choice in Hydra's own groups
    ["hydra.job.chdir=true", "trainer.seed=1"],  # a hydra value: composed in full
    ["~sched", "trainer.seed=1"],  # deleting a choice
    ["trainer.seed=1", "++report.extra_key=1"],
]


def test_every_kind_of_override_gives_hydras_own_config(hydra_loader, tmp_path):
    master = master_config(hydra_loader, tmp_path)
    ours = ComposeOncePerChoice(hydra_loader)
    for point in POINTS + POINTS:  # the second time round every base is memoised
        try:
            expected = hydra_loader.load_sweep_config(master, list(point))
        except Exception as err:  # noqa: BLE001 - then ours must fail the same way
            with pytest.raises(type(err)) as caught:
                ours.load_sweep_config(master, list(point))
            assert str(caught.value) == str(err), point
            continue
        same(ours.load_sweep_config(master, list(point)), expected)
    # only the job that sets a hydra.* value was composed by Hydra in full (in both rounds)
    assert ours.in_full == 2 * [["hydra.job.chdir=true", "trainer.seed=1"]]


def test_master_overrides_of_hydra_values_are_kept(hydra_loader, tmp_path):
    master = master_config(hydra_loader, tmp_path, ["hydra.job.config.override_dirname.kv_sep=-"])
    ours = ComposeOncePerChoice(hydra_loader)
    for seed in range(3):
        point = [f"trainer.seed={seed}", "reg.dropout=0.5"]
        got = ours.load_sweep_config(master, point)
        same(got, hydra_loader.load_sweep_config(master, point))
        assert got.hydra.job.override_dirname == f"reg.dropout-0.5,trainer.seed-{seed}"


def test_a_grid_over_values_composes_once_per_choice_of_groups(hydra_loader, tmp_path):
    master = master_config(hydra_loader, tmp_path)
    ours = ComposeOncePerChoice(hydra_loader)
    for model in ("mlp", "lenet"):
        for seed in range(4):
            ours.load_sweep_config(master, [f"model={model}", f"trainer.seed={seed}"])
    assert ours.compositions == 2


def test_each_job_gets_its_own_copy(hydra_loader, tmp_path):
    master = master_config(hydra_loader, tmp_path)
    ours = ComposeOncePerChoice(hydra_loader)
    first = ours.load_sweep_config(master, ["trainer.seed=1"])
    first.trainer.max_epochs = 999  # a launcher writes hydra.job.id/num into the config it gets
    assert ours.load_sweep_config(master, ["trainer.seed=2"]).trainer.max_epochs != 999


def test_a_bad_value_fails_with_hydras_message(hydra_loader, tmp_path):
    master = master_config(hydra_loader, tmp_path)
    ours = ComposeOncePerChoice(hydra_loader)
    ours.load_sweep_config(master, ["trainer.seed=1"])  # the base exists: the bad value is applied to a copy first
    for point in (["trainer.seed=abc"], ["trainer.sed=1"], ["model=nosuchmodel"]):
        with pytest.raises(Exception) as hydras:
            hydra_loader.load_sweep_config(master, point)
        with pytest.raises(type(hydras.value)) as got:
            ours.load_sweep_config(master, point)
        assert str(got.value) == str(hydras.value)


def test_pickled_for_another_process_without_its_memo(hydra_loader, tmp_path):
    master = master_config(hydra_loader, tmp_path)
    ours = ComposeOncePerChoice(hydra_loader)
    ours.load_sweep_config(master, ["trainer.seed=1"])
    copy = pickle.loads(pickle.dumps(ours))
    assert copy._bases == {} and copy.compositions == 0
    same(copy.load_sweep_config(master, ["trainer.seed=2"]), hydra_loader.load_sweep_config(master, ["trainer.seed=2"]))


def test_the_sweep_callback_gives_the_running_hydra_app_this_loader_once(hydra_loader, tmp_path, monkeypatch):
    """Hydra hands its app's loader to the sweeper right after on_multirun_start: that is where dlrun swaps it."""
    import types

    from hydra.core.global_hydra import GlobalHydra

    from dlrun.sweep.callback import SweepSummary

    app = types.SimpleNamespace(config_loader=hydra_loader)
    monkeypatch.setattr(GlobalHydra.instance(), "hydra", app)
    master = master_config(hydra_loader, tmp_path)
    SweepSummary().on_multirun_start(master)
    SweepSummary().on_multirun_start(master)  # a second sweep in this process does not wrap it twice
    assert isinstance(app.config_loader, ComposeOncePerChoice) and app.config_loader.inner is hydra_loader
