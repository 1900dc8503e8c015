"""Data: load a dataset by name, split it, normalise it with training statistics only -> Splits."""

from __future__ import annotations

import logging

import numpy as np

from dlrun.data.splits import Split, Splits, split_indices, subsample
from dlrun.errors import DlrunError

log = logging.getLogger(__name__)

__all__ = ["Split", "Splits", "load"]


def load(dataset_cfg, split_cfg, shift_cfg=None) -> Splits:
    """Load `dataset_cfg.name`, split it by `split_cfg`, plant `shift_cfg` in the test split (raw units),
    then normalise every split with the training split's statistics."""
    import torch

    from dlrun.data import normalize
    from dlrun.data.sources import get_loader

    source = get_loader(dataset_cfg.name)(dataset_cfg)
    x, y = source.x, source.y
    stratify = split_cfg.stratify and source.task == "classification"
    if dataset_cfg.max_samples is not None:
        keep = subsample(y, dataset_cfg.max_samples, stratify, split_cfg.seed)
        x, y = x[keep], y[keep]
    # dataset.val_from / test_from: that split comes from another file, the main source fills the others
    brought = {part: getattr(dataset_cfg, f"{part}_from", None) for part in ("val", "test")}
    brought = {part: path for part, path in brought.items() if path}
    if brought and source.load_like is None:
        raise DlrunError(f"dataset.{next(iter(brought))}_from is supported by dataset=tabular and "
                         f"dataset=image_folder, not dataset={dataset_cfg.name}")
    ratios = {"val": 0.0 if "val" in brought else split_cfg.val, "test": 0.0 if "test" in brought else split_cfg.test}
    folds = getattr(split_cfg, "folds", 0)
    if folds > 1 and "val" in brought:
        raise DlrunError(f"split.folds={folds} chooses the validation split among the training data, "
                         f"dataset.val_from={brought['val']} brings it from another file: use one of them")
    parts = split_indices(y, split_cfg.train, ratios["val"], ratios["test"], split_cfg.train_dev,
                          stratify, split_cfg.seed, folds=folds, fold=getattr(split_cfg, "fold", 0))
    for part, path in brought.items():
        log.info("dataset.%s_from=%s: the %s split comes from that file; %s is split %s", part, path, part,
                 getattr(dataset_cfg, "path", getattr(dataset_cfg, "root", "the dataset")),
                 " / ".join(f"{k} {len(v)}" for k, v in parts.items() if len(v)))

    per_channel = x.ndim == 4  # (N, C, H, W) images
    mean, std = normalize.fit_stats(x[parts["train"]], per_channel)
    classification = source.task == "classification"
    y_mean, y_scale = 0.0, 1.0
    if not classification:  # standardise regression targets too: MSE on raw units can be huge
        y_train = y[parts["train"]].astype(np.float64)
        y_mean, y_scale = float(y_train.mean()), float(y_train.std() or 1.0)

    raw = {name: (x[idx], y[idx], idx) for name, idx in parts.items()}
    for part, path in brought.items():
        other = source.load_like(str(path), f"dataset.{part}_from")
        if other.x.shape[1:] != x.shape[1:]:
            raise DlrunError(f"dataset.{part}_from={path!r} encodes to inputs of shape {other.x.shape[1:]}, the "
                             f"training data to {x.shape[1:]}")
        raw[part] = (other.x, other.y, np.arange(len(other.y)))
    shift_name, shift_detail = getattr(shift_cfg, "name", "none"), ""
    if shift_name != "none":
        from dlrun.data.shift import apply_shift

        x_test, y_test, idx_test = raw["test"]
        x_s, y_s, kept = apply_shift(x_test, y_test, shift_cfg, source.task, len(source.class_names),
                                     x[parts["train"]])
        raw["test"] = (x_s.astype(np.float32), y_s, idx_test[kept])
        shift_detail = f"severity {shift_cfg.severity}, fraction {shift_cfg.fraction:g}" + (
            f"; kept {len(kept)} of {len(y_test)} test samples" if len(kept) != len(y_test) else "")
        log.info("planted shift %s (severity %d, fraction %g) in the test split", shift_name,
                 shift_cfg.severity, shift_cfg.fraction)

    def make(name: str) -> Split:
        xs, ys, idx = raw[name]
        if classification:
            y_t = torch.tensor(ys, dtype=torch.int64)  # a copy: ys may be a read-only view
        else:
            y_t = torch.as_tensor((ys.astype(np.float64) - y_mean) / y_scale, dtype=torch.float32)
        return Split(x=torch.from_numpy(normalize.apply(xs, mean, std)), y=y_t, index=idx)

    num_outputs = len(source.class_names) if source.task == "classification" else 1
    splits = Splits(
        train=make("train"), val=make("val"), test=make("test"),
        train_dev=make("train_dev") if len(parts["train_dev"]) else None,
        task=source.task, num_outputs=num_outputs, in_shape=tuple(x.shape[1:]),
        class_names=list(source.class_names), mean=torch.from_numpy(mean), std=torch.from_numpy(std),
        description=source.description, target_mean=y_mean, target_scale=y_scale, shift=shift_name,
        shift_detail=shift_detail,
        origins={part: brought.get(part, "split") for part in ("val", "test")},
    )
    log.info("data %s: %s", dataset_cfg.name, ", ".join(f"{k}={len(s)}" for k, s in splits.items()))
    return splits
