"""A tiny name -> class registry used for protocols, scenarios and trainers."""

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Registry(dict[str, type]):
    """A dict of registered classes with a decorator to fill it.

    Parameters
    ----------
    kind : str
        What is registered (used in error messages).
    """

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        """Decorator registering a class under ``name``."""

        def decorator(cls: type[T]) -> type[T]:
            if name in self:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self[name] = cls
            return cls

        return decorator

    def get_class(self, name: str) -> type:
        """The class registered under ``name``, or a ``KeyError`` naming the options."""
        if name not in self:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {sorted(self)}")
        return self[name]
