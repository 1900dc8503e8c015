"""Data: load a dataset by name, split it, normalise it with training statistics only -> Splits."""

from __future__ import annotations

import logging

import numpy as np

from dlrun.data.splits import Split, Splits, split_indices, subsample

log = logging.getLogger(__name__)

__all__ = ["Split", "Splits", "load"]


def load(dataset_cfg, split_cfg) -> Splits:
    """Load `dataset_cfg.name`, split it by `split_cfg`, normalise with the training split's statistics."""
    import torch

    from dlrun.data import normalize
    from dlrun.data.sources import get_loader

    source = get_loader(dataset_cfg.name)(dataset_cfg)
    x, y = source.x, source.y
    stratify = split_cfg.stratify and source.task == "classification"
    if dataset_cfg.max_samples is not None:
        keep = subsample(y, dataset_cfg.max_samples, stratify, split_cfg.seed)
        x, y = x[keep], y[keep]
    parts = split_indices(y, split_cfg.train, split_cfg.val, split_cfg.test, split_cfg.train_dev,
                          stratify, split_cfg.seed)

    per_channel = x.ndim == 4  # (N, C, H, W) images
    mean, std = normalize.fit_stats(x[parts["train"]], per_channel)

    def make(name: str) -> Split:
        idx = parts[name]
        y_dtype = torch.int64 if source.task == "classification" else torch.float32
        return Split(x=torch.from_numpy(normalize.apply(x[idx], mean, std)),
                     y=torch.as_tensor(y[idx], dtype=y_dtype), index=idx)

    num_outputs = len(source.class_names) if source.task == "classification" else 1
    splits = Splits(
        train=make("train"), val=make("val"), test=make("test"),
        train_dev=make("train_dev") if len(parts["train_dev"]) else None,
        task=source.task, num_outputs=num_outputs, in_shape=tuple(x.shape[1:]),
        class_names=list(source.class_names), mean=torch.from_numpy(mean), std=torch.from_numpy(std),
        description=source.description,
    )
    log.info("data %s: %s", dataset_cfg.name, ", ".join(f"{k}={len(s)}" for k, s in splits.items()))
    return splits
