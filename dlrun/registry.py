"""A name -> builder registry (after torchvision's models/_api.py): refuses duplicates, lists the known names."""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

from dlrun.errors import DlrunError

T = TypeVar("T", bound=Callable)


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind  # "model", "dataset": used in messages
        self.items: dict[str, T] = {}

    def register(self, *names: str) -> Callable[[T], T]:
        """Decorator registering a builder under one or more names; a duplicate name is a bug and raises."""

        def wrap(fn: T) -> T:
            for name in names:
                if name in self.items:
                    raise ValueError(f"{self.kind} {name!r} is already registered (by {self.items[name].__qualname__})")
                self.items[name] = fn
            return fn

        return wrap

    def names(self) -> list[str]:
        return sorted(self.items)

    def get(self, name: str) -> T:
        """The builder for `name`; an unknown name is a user error that lists the known ones."""
        if name not in self.items:
            raise DlrunError(f"unknown {self.kind} {name!r}, expected one of {', '.join(self.names())}")
        return self.items[name]
