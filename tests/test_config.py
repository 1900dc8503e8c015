"""Config composition (Hydra compose on the real conf/ tree), the schema, and validation messages."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from dlrun.config import Config, register_configs, validate
from dlrun.errors import DlrunError
from dlrun.preflight import check_command_line
from tests.conftest import CONF_DIR

register_configs()

# options that need a value the user must give (a path) before they can be used
REQUIRED = {("dataset", "image_folder"): ["dataset.root=/tmp/x"],
            ("dataset", "tabular"): ["dataset.path=/tmp/x.csv", "dataset.target=y"],
}


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=overrides)


# groups whose options are presets over the whole config (`# @package _global_`), not a node with a schema
PRESET_GROUPS = ("hydra", "hparams_search", "experiment", "debug")


def _all_options(presets: bool = False) -> list[tuple[str, str]]:
    return [(d.name, p.stem) for d in sorted(CONF_DIR.iterdir())
            if d.is_dir() and (d.name in PRESET_GROUPS[1:] if presets else d.name not in PRESET_GROUPS)
            for p in sorted(d.glob("*.yaml"))]


@pytest.mark.parametrize("group,option", _all_options(presets=True))
def test_every_preset_composes_validates_and_changes_something(group, option):
    if group == "hparams_search":
        pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        preset = compose("config", overrides=[f"{group}={option}", *REQUIRED.get((group, option), [])],
                         return_hydra_config=True)
        default = compose("config", return_hydra_config=True)
    validate(preset)
    assert OmegaConf.to_yaml(preset) != OmegaConf.to_yaml(default)


def test_default_config_composes_and_validates():
    cfg = _compose([])
    validate(cfg)
    plain = OmegaConf.to_object(cfg)
    assert isinstance(plain, Config)
    assert plain.model.family == "mlp" and plain.model.hidden == [256, 256]
    assert plain.dataset.name == "digits"
    assert (plain.split.train, plain.split.val, plain.split.test) == (0.6, 0.2, 0.2)
    assert plain.optim.name == "adam" and plain.sched.name == "none" and plain.shift.name == "none"


@pytest.mark.parametrize("group,option", _all_options())
def test_every_option_composes(group, option):
    cfg = _compose([f"{group}={option}", *REQUIRED.get((group, option), [])])
    validate(cfg)
    plain = OmegaConf.to_object(cfg)
    node = getattr(plain, group)
    # the option's yaml selects its own schema: the dataclass named in its defaults list, with the option's values
    from dlrun.config import SCHEMAS

    text = (CONF_DIR / group / f"{option}.yaml").read_text()
    schema = next(cls for name, cls in SCHEMAS[group].items() if name in text)
    assert type(node) is schema
    if group == "model":  # the registry key is the option's name (lstm and gru share a schema, not a family)
        assert node.family == option


def test_split_presets():
    big = OmegaConf.to_object(_compose(["split=big"])).split
    assert (big.train, big.val, big.test) == (0.98, 0.01, 0.01)


def test_overrides_reach_the_dataclasses():
    plain = OmegaConf.to_object(_compose(["reg.dropout=0.5", "optim=sgd", "optim.lr=0.05", "model.hidden=[32,16]"]))
    assert plain.reg.dropout == 0.5 and plain.optim.name == "sgd" and plain.optim.lr == 0.05
    assert plain.model.hidden == [32, 16]


def test_misspelt_key_fails_at_composition():
    with pytest.raises(Exception, match="droput"):
        _compose(["reg.droput=0.5"])


@pytest.mark.parametrize("override,message", [
    ("split.train=0.5", "split ratios must sum to 1, got 0.9"),
    ("split.train=1.0", "split.train must be in [0, 1)"),
    ("split.train_dev=1.0", "split.train_dev must be in [0, 1)"),
    ("reg.dropout=1.0", "reg.dropout must be in [0, 1), got 1.0"),
    ("reg.weight_decay=-1", "reg.weight_decay must be >= 0"),
    ("optim.lr=0", "optim.lr must be a finite number > 0, got 0"),
    ("optim.lr=inf", "optim.lr must be a finite number > 0, got inf"),
    ("early_stop.patience=-1", "early_stop.patience must be >= 0"),
    ("trainer.batch_size=0", "trainer.batch_size must be >= 1"),
    ("trainer.max_epochs=0", "trainer.max_epochs must be >= 1"),
    ("trainer.device=tpu", "trainer.device='tpu' is not allowed, expected one of auto, cpu, cuda"),
    ("trainer.precision=8", "trainer.precision='8' is not allowed, expected one of auto, 32, bf16, 16"),
    ("early_stop.monitor=accuracy", "early_stop.monitor='accuracy' is not allowed, expected one of val_loss"),
    ("early_stop.mode=up", "expected one of auto, min, max"),
    ("model.activation=swish", "expected one of relu, leaky_relu, gelu, tanh, sigmoid"),
    ("sched.gamma=0", "sched.gamma must be in (0, 1]"),
    ("report.target_error=-0.1", "report.target_error must be >= 0 (a fraction in [0, 1) for classification"),
    ("optim.nesterov=true", "optim.nesterov needs optim=sgd"),
    ("model.hidden=[0]", "model.hidden must be widths >= 1, got [0] ([] is a linear model)"),
    ("model=lenet model.channels=[]", "model.channels must be widths >= 1, got []"),
    ("trainer.resume=auto trainer.overwrite=true", "trainer.resume=auto and trainer.overwrite=true exclude each other"),
])
def test_validation_names_the_key_and_the_rule(override, message):
    cfg = _compose(override.split())
    with pytest.raises(DlrunError) as err:
        validate(cfg)
    assert message in str(err.value)


@pytest.mark.parametrize("argv,message", [
    (["reg.droput=0.5"], "unknown key 'reg.droput'. Did you mean reg.dropout? Keys of reg: dropout"),
    (["model.hiden=[3]"], "Did you mean model.hidden?"),
    (["reg.augment.nois=0.1"], "Did you mean reg.augment.noise?"),
    (["foo.bar=1"], "unknown group 'foo'"),
    (["model=vgx"], "model='vgx' is not an option, expected one of"),
    (["reg.dropout=abc"], "reg.dropout='abc': expected a number"),
    (["trainer.max_epochs=1.5"], "trainer.max_epochs='1.5': expected an integer"),
    (["early_stop.enabled=maybe"], "early_stop.enabled='maybe': expected true or false"),
    (["model.hidden=abc"], "model.hidden='abc': expected a list such as [64,32] ([] for none)"),
    (["reg.dropout=null"], "reg.dropout='null': expected a value: this key cannot be null"),
    (["trainer.max_epochs=null", "trainer.max_epochs=1"], "trainer.max_epochs='null': expected a value"),
    (["~reg.dropout"], "~reg.dropout: a key of a group cannot be deleted"),
    (["reg="], "reg='' is not an option, expected one of default"),
    (["dataset=synthetic", "dataset.task=foo"], "expected one of classification, regression, sequence"),
])
def test_preflight_names_the_key_and_the_allowed_values(argv, message):
    with pytest.raises(DlrunError) as err:
        check_command_line(argv, str(CONF_DIR))
    assert message in str(err.value)


def test_an_mlp_without_hidden_layers_is_valid():
    validate(_compose(["model.hidden=[]"]))  # a linear (logistic) model: the report may suggest it


def test_preflight_accepts_good_overrides_and_hydra_flags():
    cfg = check_command_line(["model=mlp", "model.hidden=[8]", "reg.dropout=0.5", "report.target_error=null",
                              "hydra.run.dir=/tmp/x"], str(CONF_DIR))
    assert list(cfg.model.hidden) == [8] and cfg.reg.dropout == 0.5 and cfg.report.target_error is None
    assert check_command_line(["-m", "reg.dropout=0,0.5", "model.hidden=[8]"], str(CONF_DIR)) is None


def test_a_sweep_over_an_option_with_required_keys_takes_them_from_the_command_line(tmp_path):
    """dataset=tabular requires dataset.path: a sweep point supplies it with its values, after the group choice."""
    for argv in (["-m", "dataset=tabular", f"dataset.path={tmp_path}/t.csv", "dataset.target=y", "reg.dropout=0,0.5"],
                 ["-m", "dataset=image_folder", f"dataset.root={tmp_path}", "reg.dropout=0,0.5"]):
        assert check_command_line(argv, str(CONF_DIR)) is None
    with pytest.raises(DlrunError, match="dataset.path, dataset.target are required here and not set"):
        check_command_line(["-m", "dataset=tabular", "reg.dropout=0,0.5"], str(CONF_DIR))


@pytest.mark.parametrize("argv,message", [
    (["+reg.droput=0.5"], "unknown key (added with +) 'reg.droput'. Did you mean reg.dropout?"),
    (["++reg.droput=0.5"], "unknown key (added with +) 'reg.droput'. Did you mean reg.dropout?"),
    (["+seed=42"], "unknown key (added with +) 'seed': every key belongs to a group. Did you mean trainer.seed"),
    (["seed=42"], "unknown key 'seed': every key belongs to a group. Did you mean trainer.seed"),
    (["+split.nfolds=5"], "unknown key (added with +) 'split.nfolds'. Did you mean split.folds? Keys of split: train"),
    (["-m", "reg.dropout=0.1,abc"], "reg.dropout='abc': expected a number"),
    (["-m", "reg.dropout=0.1,0.2", "split.train=0.6,0.5"], "split ratios must sum to 1, got 0.9"),
    (["reg.dropout=0,0.5"], "reg.dropout=0,0.5 is a sweep: add -m"),
    (["reg.dropout=[1"], "cannot read the override 'reg.dropout=[1'"),
    (["hydra/launcher=nope"], "hydra/launcher='nope' is not an option, expected one of basic"),
    (["-m", "dataset=nope", "reg.dropout=0,0.5"], "dataset='nope' is not an option, expected one of"),
    (["-m", "reg.dropout=0,0.5", "--cfg", "job"], "-m and --cfg do not go together"),
    (["-m", "model=mlp,lenet", "model.hidden=[32]"], "Keys of model: family"),
    (["-m", "model=mlp,lenet", "model.hidden=[32]"], "(in the sweep's job model=lenet model.hidden=[32])"),
    (["dataset.path=a,b.csv"], "a value that contains a comma is quoted, e.g. 'dataset.path=\"a,b.csv\"'"),
    (["--cfg", "job", "--info"], "--cfg and --info do not go together"),
    (["--config-dir", "/nonexistent/conf"], "--config-dir /nonexistent/conf: no such folder"),
])
def test_every_composed_key_and_every_sweep_point_is_checked(argv, message):
    with pytest.raises(DlrunError) as err:
        check_command_line(argv, str(CONF_DIR))
    assert message in str(err.value)


def test_a_users_config_dir_gets_the_same_checks(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "tiny.yaml").write_text("defaults: [mlp_schema]\nhidden: [16]\n")
    cfg = check_command_line(["--config-dir", str(tmp_path), "model=tiny"], str(CONF_DIR))
    assert list(cfg.model.hidden) == [16]
    for argv, message in ((["reg.droput=0.5"], "Did you mean reg.dropout?"),
                          (["model=tiny", "model.hiden=[3]"], "Did you mean model.hidden?"),
                          (["model=tinny"], "Did you mean model=tiny?")):
        with pytest.raises(DlrunError) as err:
            check_command_line(["--config-dir", str(tmp_path), *argv], str(CONF_DIR))
        assert message in str(err.value)


def test_preflight_reads_the_selected_option_schema():
    # model.hidden belongs to the mlp schema; with another option selected it would be unknown
    check_command_line(["model=mlp", "model.hidden=[8]"], str(CONF_DIR))
    other = [p.stem for p in (Path(CONF_DIR) / "model").glob("*.yaml") if p.stem in ("vgg", "resnet")]
    for option in other:
        with pytest.raises(DlrunError, match="model.hidden"):
            check_command_line([f"model={option}", "model.hidden=[8]"], str(CONF_DIR))


def test_readme_documents_every_key_of_the_fixed_groups():
    from dataclasses import fields

    from dlrun import config as c

    readme = (CONF_DIR.parent / "README.md").read_text()
    groups = {"split": c.SplitConfig, "reg": c.RegConfig, "early_stop": c.EarlyStopConfig, "optim": c.OptimConfig,
              "sched": c.SchedConfig, "trainer": c.TrainerConfig, "report": c.ReportConfig}
    missing = [f"{g}.{f.name}" for g, cls in groups.items() for f in fields(cls)
               if f"{g}.{f.name}" not in readme]
    assert not missing, f"README's configuration reference lacks {missing}"


def test_slurm_launcher_without_the_plugin_says_what_to_install(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DlrunError, match=r"pip install 'dlrun\[slurm\]'"):
        check_command_line(["-m", "hydra/launcher=slurm", "reg.dropout=0,0.5"], str(CONF_DIR))


@pytest.mark.parametrize("overrides,message", [
    (["model=vgg", "model.width=0"], "model.width must be >= 1, got 0"),
    (["model=lstm", "model.hidden_size=0"], "model.hidden_size must be >= 1"),
    (["dataset=synthetic", "dataset.task=auto"], "dataset.task='auto' is not allowed for dataset=synthetic"),
    (["dataset=tabular", "dataset.path=x.csv", "dataset.target=y", "dataset.task=sequence"],
     "expected one of auto, classification, regression"),
    (["dataset=tabular", "dataset.path=x.csv", "dataset.target=y", "dataset.task=foo"],
     "dataset.task='foo' is not allowed for dataset=tabular, expected one of auto, classification, regression"),
    (["dataset=image_folder", "dataset.root=/tmp", "dataset.image_size=0"], "dataset.image_size must be >= 1"),
])
def test_validation_of_option_specific_keys(overrides, message):
    with pytest.raises(DlrunError) as err:
        validate(_compose(overrides))
    assert message in str(err.value)


def test_experiment_and_debug_presets_from_the_command_line_and_from_the_users_config_dir(tmp_path):
    from dlrun.preflight import check_command_line

    cfg = check_command_line(["experiment=overfit_demo", "debug=fast"], str(CONF_DIR))
    assert cfg.split.train == 0.05 and cfg.model.hidden == [512, 512] and not cfg.early_stop.enabled
    assert cfg.trainer.max_epochs == 1 and cfg.trainer.limit_train_batches == 5 and cfg.report.plots is False
    mine = tmp_path / "conf" / "experiment"
    mine.mkdir(parents=True)
    (mine / "mine.yaml").write_text("# @package _global_\ndefaults:\n  - override /model: lenet\nreg:\n  dropout: 0.3\n")
    cfg = check_command_line(["--config-dir", str(tmp_path / "conf"), "experiment=mine"], str(CONF_DIR))
    assert cfg.model.family == "lenet" and cfg.reg.dropout == 0.3
    with pytest.raises(DlrunError, match="experiment='nope' is not an option, expected one of .*overfit_demo"):
        check_command_line(["experiment=nope"], str(CONF_DIR))
