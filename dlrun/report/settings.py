"""Reading the run's settings (the config as plain nested dicts, pipeline._as_dict) by dotted key."""

from __future__ import annotations

from typing import Any


def get(settings: dict, dotted: str, default: Any = None) -> Any:
    """get(settings, "optim.lr") -> settings["optim"]["lr"], or `default` where a level is missing."""
    node: Any = settings
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node
