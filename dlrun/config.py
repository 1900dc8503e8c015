"""The config schema: one dataclass per group, stored in Hydra's ConfigStore, and validate(cfg).

Each `conf/GROUP/NAME.yaml` extends its schema (`defaults: [NAME_schema]`), so a misspelt key or a wrong
type fails at composition. Rules across fields live in `validate()`, run once before any heavy import.
Dataclasses hold values, no logic. This module must not import torch (see tests/test_cli.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Optional

from omegaconf import MISSING

from dlrun.errors import DlrunError

# ----------------------------------------------------------------------------------------------------------------------
# model group: `family` is the registry key (dlrun/models/registry.py); each family adds its own fields.
# Every model is `head(features(x))`, so transfer learning can freeze `features` and the report can read them.


@dataclass
class ModelConfig:
    family: str = MISSING
    weights: Optional[str] = None  # a local state dict to start from (transfer learning); loaded weights_only
    freeze: str = "none"  # none | features | all_but_head: frozen parameters get no gradient, no optimizer slot
    init: str = "default"  # default (PyTorch's) | kaiming (He, for ReLU) | xavier (Glorot, for tanh/sigmoid)
    init_bias: Optional[float] = None  # every layer's bias set to this constant (very negative: dying ReLU, planted)


@dataclass
class MLPConfig(ModelConfig):
    family: str = "mlp"
    hidden: list[int] = field(default_factory=lambda: [256, 256])  # width of each hidden layer
    activation: str = "relu"  # relu | leaky_relu | gelu | tanh | sigmoid


@dataclass
class LeNetConfig(ModelConfig):
    family: str = "lenet"
    channels: list[int] = field(default_factory=lambda: [6, 16])  # the two conv layers
    fc: list[int] = field(default_factory=lambda: [120, 84])  # the hidden fully connected layers
    activation: str = "relu"  # relu | leaky_relu | gelu | tanh | sigmoid (LeCun used tanh)


@dataclass
class AlexNetConfig(ModelConfig):
    family: str = "alexnet"
    width: int = 64  # channels of the first conv; the others scale as in AlexNet (64-192-384-256-256)
    fc: int = 1024  # width of the two hidden fully connected layers (4096 in the paper, for 224x224 inputs)


@dataclass
class VGGConfig(ModelConfig):
    family: str = "vgg"
    variant: int = 11  # 11 | 13 | 16 (Simonyan & Zisserman, 2015, configurations A, B, D)
    width: int = 64  # channels of the first stage; doubled per stage up to 8x (512 in the paper)
    fc: int = 512  # width of the two hidden fully connected layers


@dataclass
class ResNetConfig(ModelConfig):
    family: str = "resnet"
    variant: int = 18  # 18 | 34 (He et al., 2016, basic blocks)
    width: int = 64  # channels of the first stage, doubled per stage


@dataclass
class InceptionConfig(ModelConfig):
    family: str = "inception"
    width: int = 32  # channels of the stem; the inception blocks scale from it
    blocks: int = 4  # number of inception blocks (GoogLeNet has 9, for 224x224 inputs)


@dataclass
class RecurrentConfig(ModelConfig):
    """LSTM or GRU over a sequence: inputs (C, H, W) are read as H steps of C*W features; (T, F) as T steps."""

    family: str = "lstm"  # lstm | gru
    hidden_size: int = 128
    num_layers: int = 1
    bidirectional: bool = False


@dataclass
class TorchvisionModelConfig(ModelConfig):
    """Any model in torchvision.models.list_models(), its head replaced to fit the classes."""

    family: str = "torchvision"
    name: str = "resnet18"  # a name from torchvision.models.list_models()
    # model.weights may also be DEFAULT: torchvision's pretrained weights, fetched only with model.download=true
    download: bool = False


# ----------------------------------------------------------------------------------------------------------------------
# dataset group: `name` is the registry key (dlrun/data/sources/registry.py).


@dataclass
class DatasetConfig:
    name: str = MISSING
    loader: str = "auto"  # auto | memory | dataloader: in memory on the device, or streamed through a DataLoader
    num_workers: int = 2  # DataLoader workers, when the data is streamed
    max_samples: Optional[int] = None  # keep only the first N samples (stratified), for quick experiments


@dataclass
class DigitsConfig(DatasetConfig):
    """scikit-learn's handwritten digits (1797 images of 8x8, 10 classes): ships inside scikit-learn."""

    name: str = "digits"


@dataclass
class SklearnDatasetConfig(DatasetConfig):
    """scikit-learn's bundled tabular sets: iris, wine, breast_cancer (classification), diabetes (regression)."""

    name: str = "iris"


@dataclass
class SyntheticConfig(DatasetConfig):
    """Generated data for controlled experiments (scikit-learn's make_classification / make_regression)."""

    name: str = "synthetic"
    task: str = "classification"  # classification | regression | sequence
    n_samples: int = 2000
    n_features: int = 20
    n_informative: int = 10
    n_classes: int = 3
    class_sep: float = 1.0  # larger is easier (make_classification's class_sep)
    label_noise: float = 0.0  # fraction of labels replaced by a random class
    noise: float = 0.1  # std of the Gaussian noise on regression targets
    seq_len: int = 20  # time steps of the sequence task
    seed: int = 0


@dataclass
class TorchvisionDatasetConfig(DatasetConfig):
    """mnist | fashion_mnist | cifar10 | svhn read with torchvision from `root`."""

    name: str = "mnist"
    root: str = "data"
    download: bool = False  # the only way dlrun touches the network for data


@dataclass
class ImageFolderConfig(DatasetConfig):
    name: str = "image_folder"
    root: str = MISSING  # one folder per class
    image_size: int = 32  # images are resized to image_size x image_size
    grayscale: bool = False
    val_from: Optional[str] = None  # another folder with the same classes: the validation split (not carved from root)
    test_from: Optional[str] = None  # another folder with the same classes: the test split


@dataclass
class TabularConfig(DatasetConfig):
    name: str = "tabular"
    path: str = MISSING  # a .csv or .parquet file
    target: str = MISSING  # the column to predict
    task: str = "auto"  # auto | classification | regression
    val_from: Optional[str] = None  # another table with the same columns: the validation split (not carved from path)
    test_from: Optional[str] = None  # another table with the same columns: the test split


# ----------------------------------------------------------------------------------------------------------------------
# the fixed-schema groups


@dataclass
class SplitConfig:
    """Fractions of the whole dataset; train_dev is a fraction of the training portion, never trained on."""

    train: float = 0.6
    val: float = 0.2
    test: float = 0.2
    train_dev: float = 0.0  # Ng's train-dev set: same distribution as train, held out
    stratify: bool = True
    seed: int = 0
    # k-fold cross-validation: folds=K > 1 splits what the test split leaves into K folds (split.val is then
    # ignored) and fold i is the validation split; dlrun -m split.folds=5 'split.fold=range(5)' runs all K
    folds: int = 0
    fold: int = 0


@dataclass
class AugmentConfig:
    """Data augmentation and noise injection: applied on the device to training batches only."""

    noise: float = 0.0  # std of Gaussian noise added to the (normalised) inputs; 0 = off
    rotation: float = 0.0  # images: random rotation within +-degrees; 0 = off
    hflip: bool = False  # images: random horizontal flip (p=0.5)
    vflip: bool = False  # images: random vertical flip (p=0.5)
    blur: float = 0.0  # images: Gaussian blur with sigma drawn in [0, blur] pixels; 0 = off
    translate: int = 0  # images: random translation (pad and crop) by up to this many pixels; 0 = off
    mixup: float = 0.0  # mixup's Beta(alpha, alpha) (Zhang et al., 2018); 0 = off


@dataclass
class RegConfig:
    dropout: float = 0.0  # probability, in [0, 1)
    weight_decay: float = 0.0  # L2 penalty coefficient on weights (decoupled for adamw); biases and norms exempt
    l1: float = 0.0  # L1 penalty coefficient on weights, added to the loss
    batchnorm: bool = False  # a BatchNorm after each hidden layer
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class ShiftConfig:
    """A distribution shift planted in the test split only, in raw input space before normalisation."""

    name: str = "none"  # none | gaussian_noise | rotation | blur | contrast | occlusion | feature_scale | label_prior
    severity: int = 3  # 1..5, see dlrun/data/shift.py for each scale
    fraction: float = 1.0  # share of test samples affected
    seed: int = 0


@dataclass
class EarlyStopConfig:
    enabled: bool = True
    monitor: str = "val_loss"  # val_loss | val_error | train_loss | train_error
    mode: str = "auto"  # auto | min | max (auto: min for losses and errors)
    patience: int = 10  # epochs without improvement before stopping
    min_delta: float = 0.0  # an improvement must beat the best by more than this
    restore_best: bool = True  # put the best epoch's weights back at the end
    baseline: Optional[float] = None  # stop if the monitored value has not beaten this after `patience` epochs
    start_from_epoch: int = 0  # epochs to wait before counting patience (warm-up)
    check_finite: bool = True  # stop when the monitored value is NaN or inf
    stopping_threshold: Optional[float] = None  # stop as soon as the monitor is better than this (Lightning)
    divergence_threshold: Optional[float] = None  # stop as soon as the monitor is worse than this (Lightning)


@dataclass
class OptimConfig:
    name: str = "adam"  # adam | adamw | sgd
    lr: float = 1e-3
    momentum: float = 0.9  # sgd only
    nesterov: bool = False  # sgd only
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adam, adamw
    fused: bool = False  # torch's fused kernels: ~20% faster small-model epochs on the CPU, not bit-identical


@dataclass
class SchedConfig:
    name: str = "none"  # none | step | cosine | plateau
    step_size: int = 30  # step: epochs between decays
    gamma: float = 0.1  # step and plateau: the decay factor
    patience: int = 5  # plateau: epochs without val_loss improvement before decaying
    min_lr: float = 0.0  # cosine and plateau: the floor


@dataclass
class TrainerConfig:
    max_epochs: int = 50
    batch_size: int = 64
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto | 32 | bf16 | 16 (auto: bf16 on a CUDA GPU that has it, else 32)
    seed: int = 0
    deterministic: bool = False  # torch.use_deterministic_algorithms (slower on CUDA)
    progress: str = "auto"  # auto | true | false (auto: only on a terminal)
    # a run folder or a checkpoint file; auto: this run's own folder when it holds a checkpoint, nothing to do when
    # it holds a finished run (a requeued Slurm job, a resumed sweep), a fresh start otherwise
    resume: Optional[str] = None
    checkpoint_every: float = 60.0  # seconds between checkpoint writes (also written at the end and on a signal)
    tensorboard: bool = True  # write TensorBoard event files (when tensorboard is installed)
    compile: bool = False  # torch.compile the model (CUDA)
    # torch.set_num_threads: auto = the CPUs granted to this process (its affinity, SLURM_CPUS_PER_TASK), divided
    # among the processes torchrun starts on the node; a number sets it; null leaves torch's default (every core of
    # the node, which on a shared machine made epochs 10 to 70 times slower)
    threads: Optional[str] = "auto"
    overwrite: bool = False  # reuse a hydra.run.dir that holds a run: its checkpoints, report and events are replaced
    # as in Lightning: null = every batch, an integer = that many batches per epoch, a fraction in (0, 1] = that share;
    # limit_val_batches limits the per-epoch validation (early stopping); the report still evaluates whole splits
    limit_train_batches: Any = None
    limit_val_batches: Any = None
    grad_clip: Optional[float] = None  # clip the gradients' global norm to this before each step (exploding gradients)


@dataclass
class ReportConfig:
    target_error: Optional[float] = None  # best achievable error (human level, Bayes): a fraction in [0, 1) for
    # classification, an RMSE in the target's units for regression
    tolerance: float = 0.05  # a gap (fraction of samples) smaller than this is not a finding
    alpha: float = 0.05  # significance level of the tests behind each finding
    plots: bool = True
    # a quality gate: exit with status 5 when one of these verdicts fires (underfitting, overfitting,
    # data_mismatch, distribution_shift), e.g. report.fail_on=[overfitting,distribution_shift]
    fail_on: list[str] = field(default_factory=list)
    probe_every: int = 1  # training-health probes (dynamics.csv) on one batch of every n-th epoch; 0 = off


# ----------------------------------------------------------------------------------------------------------------------
# logger group: a list, logger=[tensorboard,mlflow]; each option fills its own field, the others stay None.
# The code that logs is dlrun/loggers.py.


@dataclass
class TensorBoardConfig:
    hparams: bool = True  # an HParams session per run: overrides, final errors, verdicts (needs trainer.tensorboard)


@dataclass
class MLflowConfig:
    tracking_uri: Optional[str] = None  # null: $MLFLOW_TRACKING_URI, else MLflow's local default (sqlite:///mlflow.db)
    experiment_name: str = "dlrun"
    nest_sweeps: bool = True  # the jobs of a sweep as child runs of one parent run per sweep folder
    artifacts: bool = True  # report.html, report.json, report.md and plots/ as run artifacts


@dataclass
class LoggerConfig:
    tensorboard: Optional[TensorBoardConfig] = None
    mlflow: Optional[MLflowConfig] = None


@dataclass
class Config:
    model: ModelConfig = MISSING
    dataset: DatasetConfig = MISSING
    split: SplitConfig = MISSING
    reg: RegConfig = MISSING
    early_stop: EarlyStopConfig = MISSING
    optim: OptimConfig = MISSING
    sched: SchedConfig = MISSING
    trainer: TrainerConfig = MISSING
    report: ReportConfig = MISSING
    shift: ShiftConfig = MISSING
    logger: LoggerConfig = field(default_factory=LoggerConfig)  # a Config built in Python selects no logger


# group -> {schema name -> dataclass}; conf/GROUP/*.yaml name these in their defaults list.
SCHEMAS: dict[str, dict[str, type]] = {
    "model": {
        "mlp_schema": MLPConfig,
        "lenet_schema": LeNetConfig,
        "alexnet_schema": AlexNetConfig,
        "vgg_schema": VGGConfig,
        "resnet_schema": ResNetConfig,
        "inception_schema": InceptionConfig,
        "recurrent_schema": RecurrentConfig,
        "torchvision_schema": TorchvisionModelConfig,
    },
    "dataset": {
        "digits_schema": DigitsConfig,
        "sklearn_schema": SklearnDatasetConfig,
        "synthetic_schema": SyntheticConfig,
        "torchvision_schema": TorchvisionDatasetConfig,
        "image_folder_schema": ImageFolderConfig,
        "tabular_schema": TabularConfig,
    },
    "split": {"split_schema": SplitConfig},
    "reg": {"reg_schema": RegConfig},
    "early_stop": {"early_stop_schema": EarlyStopConfig},
    "optim": {"optim_schema": OptimConfig},
    "sched": {"sched_schema": SchedConfig},
    "trainer": {"trainer_schema": TrainerConfig},
    "report": {"report_schema": ReportConfig},
    "shift": {"shift_schema": ShiftConfig},
    "logger": {"logger_schema": LoggerConfig},  # conf/logger/*.yaml fill its fields, typed through Config.logger
}


def register_configs() -> None:
    """Store every schema in Hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    for group, schemas in SCHEMAS.items():
        for name, node in schemas.items():
            cs.store(group=group, name=name, node=node)


# ----------------------------------------------------------------------------------------------------------------------
# validate(): rules a type cannot express. Raises DlrunError naming the key, the value and what is allowed.

CHOICES: dict[str, tuple[str, ...]] = {
    "model.activation": ("relu", "leaky_relu", "gelu", "tanh", "sigmoid"),
    "model.init": ("default", "kaiming", "xavier"),
    "model.freeze": ("none", "features", "all_but_head"),
    "dataset.loader": ("auto", "memory", "dataloader"),
    "dataset.task": ("auto", "classification", "regression", "sequence"),
    "early_stop.monitor": ("val_loss", "val_error", "train_loss", "train_error"),
    "early_stop.mode": ("auto", "min", "max"),
    "optim.name": ("adam", "adamw", "sgd"),
    "sched.name": ("none", "step", "cosine", "plateau"),
    "trainer.precision": ("auto", "32", "bf16", "16"),
    "trainer.progress": ("auto", "true", "false"),
    "shift.name": ("none", "gaussian_noise", "rotation", "blur", "contrast", "occlusion", "feature_scale",
                   "label_prior"),
}


def _check_choice(key: str, value: Any) -> None:
    allowed = CHOICES[key]
    if str(value) not in allowed:
        raise DlrunError(f"{key}={value!r} is not allowed, expected one of {', '.join(allowed)}")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise DlrunError(message)


def _get(node: Any, name: str) -> Any:
    """Read a field from a dataclass or a DictConfig alike."""
    return getattr(node, name, None)


def validate(cfg: Any) -> None:
    """Check cross-field rules and value ranges; `cfg` is the composed DictConfig or the Config dataclass."""
    # choices, wherever the selected option has the field
    for key in CHOICES:
        if key == "dataset.task":
            continue  # each dataset has its own tasks: checked below, naming only those
        group, name = key.split(".")
        node = _get(cfg, group)
        if node is not None and name in _field_names(node):
            value = _get(node, name)
            if key == "trainer.progress":  # yaml reads `false` as a bool, the str field holds "False"
                value = str(value).lower()
            _check_choice(key, value)
    device = str(cfg.trainer.device)
    _check(
        device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit()),
        f"trainer.device={device!r} is not allowed, expected one of auto, cpu, cuda, cuda:N",
    )

    _check(not (cfg.trainer.resume and cfg.trainer.overwrite),
           f"trainer.resume={cfg.trainer.resume} and trainer.overwrite=true exclude each other: resume continues the "
           "run in its folder, overwrite replaces it; keep one")

    s = cfg.split
    for name in ("train", "val", "test"):
        value = _get(s, name)
        _check(0.0 <= value < 1.0, f"split.{name} must be in [0, 1), got {value}")
    _check(s.train > 0, f"split.train must be > 0, got {s.train}")
    _check(s.val > 0, f"split.val must be > 0 (early stopping and the diagnosis need it), got {s.val}")
    _check(s.test > 0, f"split.test must be > 0 (the distribution-shift finding needs it), got {s.test}")
    total = s.train + s.val + s.test
    _check(
        math.isclose(total, 1.0, abs_tol=1e-6),
        f"split ratios must sum to 1, got {total:g} (train={s.train}, val={s.val}, test={s.test})",
    )
    _check(0.0 <= s.train_dev < 1.0, f"split.train_dev must be in [0, 1) (a fraction of train), got {s.train_dev}")
    _check(s.folds == 0 or s.folds >= 2, f"split.folds must be 0 (no k-fold) or at least 2, got {s.folds}")
    _check(s.folds == 0 or 0 <= s.fold < s.folds,
           f"split.fold must be in 0..{s.folds - 1} (split.folds={s.folds}), got {s.fold}")
    _check(s.folds != 0 or s.fold == 0, f"split.fold={s.fold} needs split.folds=K (k-fold cross-validation)")

    r = cfg.reg
    _check(0.0 <= r.dropout < 1.0, f"reg.dropout must be in [0, 1), got {r.dropout}")
    _check(r.weight_decay >= 0, f"reg.weight_decay must be >= 0, got {r.weight_decay}")
    _check(r.l1 >= 0, f"reg.l1 must be >= 0, got {r.l1}")

    e = cfg.early_stop
    _check(e.patience >= 0, f"early_stop.patience must be >= 0, got {e.patience}")
    _check(e.min_delta >= 0, f"early_stop.min_delta must be >= 0, got {e.min_delta}")
    _check(e.start_from_epoch >= 0, f"early_stop.start_from_epoch must be >= 0, got {e.start_from_epoch}")
    # every monitor dlrun records is a loss or an error: smaller is better. `max` would silently keep the worst epoch
    _check(e.mode != "max", f"early_stop.mode=max with early_stop.monitor={e.monitor}: a loss or an error is "
                            "better when smaller, expected early_stop.mode=auto or min")
    if e.stopping_threshold is not None and e.divergence_threshold is not None:
        _check(e.stopping_threshold < e.divergence_threshold,
               f"early_stop.stopping_threshold={e.stopping_threshold} must be below "
               f"early_stop.divergence_threshold={e.divergence_threshold} for a loss or an error")

    o = cfg.optim
    _check(math.isfinite(o.lr) and o.lr > 0, f"optim.lr must be a finite number > 0, got {o.lr}")
    _check(0 <= o.momentum < 1, f"optim.momentum must be in [0, 1), got {o.momentum}")
    _check(len(o.betas) == 2 and all(0 <= b < 1 for b in o.betas), f"optim.betas must be two numbers in [0, 1), got {list(o.betas)}")
    _check(not (o.nesterov and (o.name != "sgd" or o.momentum == 0)), "optim.nesterov needs optim=sgd and optim.momentum > 0")

    sc = cfg.sched
    _check(sc.step_size >= 1, f"sched.step_size must be >= 1, got {sc.step_size}")
    _check(0 < sc.gamma <= 1, f"sched.gamma must be in (0, 1], got {sc.gamma}")
    _check(sc.patience >= 0, f"sched.patience must be >= 0, got {sc.patience}")
    _check(sc.min_lr >= 0, f"sched.min_lr must be >= 0, got {sc.min_lr}")

    t = cfg.trainer
    _check(t.max_epochs >= 1, f"trainer.max_epochs must be >= 1, got {t.max_epochs}")
    _check(t.batch_size >= 1, f"trainer.batch_size must be >= 1, got {t.batch_size}")
    _check(t.checkpoint_every >= 0, f"trainer.checkpoint_every must be >= 0 seconds, got {t.checkpoint_every}")
    for name in ("limit_train_batches", "limit_val_batches"):
        value = getattr(t, name)
        _check(value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1)
               or (isinstance(value, float) and 0.0 < value <= 1.0),
               f"trainer.{name}={value!r} is not allowed, expected null (every batch), a whole number of batches "
               ">= 1, or a fraction in (0, 1] such as 0.25")
    _check(t.grad_clip is None or t.grad_clip > 0, f"trainer.grad_clip must be > 0 (or null: no clipping), "
                                                   f"got {t.grad_clip}")
    _check(t.threads is None or str(t.threads) == "auto" or (str(t.threads).isdigit() and int(t.threads) >= 1),
           f"trainer.threads={t.threads!r} is not allowed, expected auto, a whole number >= 1, or null")

    logger = _get(cfg, "logger")
    if logger is not None and _get(logger, "mlflow") is not None:
        import importlib.util  # find_spec looks for the package without importing it

        _check(importlib.util.find_spec("mlflow") is not None,
               "logger=[...,mlflow] needs MLflow, which is not installed here: pip install 'dlrun[mlflow]' "
               "(or choose logger=[tensorboard])")

    sh = cfg.shift
    _check(1 <= sh.severity <= 5, f"shift.severity must be in 1..5, got {sh.severity}")
    _check(0 < sh.fraction <= 1, f"shift.fraction must be in (0, 1], got {sh.fraction}")

    a = r.augment
    for name in ("noise", "rotation", "blur", "mixup"):
        _check(getattr(a, name) >= 0, f"reg.augment.{name} must be >= 0, got {getattr(a, name)}")
    _check(a.translate >= 0, f"reg.augment.translate must be >= 0, got {a.translate}")

    rep = cfg.report
    _check(
        rep.target_error is None or 0 <= rep.target_error,
        f"report.target_error must be >= 0 (a fraction in [0, 1) for classification, an RMSE in the target's units "
        f"for regression), got {rep.target_error}",
    )
    _check(0 < rep.tolerance < 1, f"report.tolerance must be in (0, 1), got {rep.tolerance}")
    _check(0 < rep.alpha < 1, f"report.alpha must be in (0, 1), got {rep.alpha}")
    _check(rep.probe_every >= 0, f"report.probe_every must be >= 0 (0 turns the probes off), got {rep.probe_every}")
    verdicts = ("underfitting", "overfitting", "data_mismatch", "distribution_shift")
    unknown = [v for v in rep.fail_on if v not in verdicts]
    _check(not unknown, f"report.fail_on={list(rep.fail_on)}: {', '.join(unknown)} is not a verdict, expected a list "
                        f"of {', '.join(verdicts)}, e.g. report.fail_on=[overfitting,distribution_shift]")

    m = cfg.model
    for name in ("width", "fc", "blocks", "hidden_size", "num_layers", "channels", "hidden"):
        if name in _field_names(m):  # an int, or a list of widths (mlp hidden, lenet channels and fc)
            value = _get(m, name)
            if isinstance(value, int):
                _check(value >= 1, f"model.{name} must be >= 1, got {value}")
            else:
                sizes = list(value)
                empty_ok = m.family == "mlp" and name == "hidden"  # no hidden layer: a linear (logistic) model
                _check((empty_ok or len(sizes) >= 1) and all(v >= 1 for v in sizes),
                       f"model.{name} must be widths >= 1, got {sizes}"
                       + (" ([] is a linear model)" if empty_ok else ""))
    d = cfg.dataset
    if "image_size" in _field_names(d):
        _check(d.image_size >= 1, f"dataset.image_size must be >= 1, got {d.image_size}")
    if "task" in _field_names(d):
        allowed = {"synthetic": ("classification", "regression", "sequence"),
                   "tabular": ("auto", "classification", "regression")}.get(d.name, CHOICES["dataset.task"])
        _check(d.task in allowed,
               f"dataset.task={d.task!r} is not allowed for dataset={d.name}, expected one of {', '.join(allowed)}")
    _check(d.max_samples is None or d.max_samples >= 10, f"dataset.max_samples must be >= 10, got {d.max_samples}")
    _check(d.num_workers >= 0, f"dataset.num_workers must be >= 0, got {d.num_workers}")


def _field_names(node: Any) -> set[str]:
    if hasattr(node, "__dataclass_fields__"):
        return {f.name for f in fields(node)}
    return set(node.keys())
