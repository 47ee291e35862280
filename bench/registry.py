"""Name → object registries with refusals that list the valid names.

Every pluggable piece of the bench (datasets, models, attacks, methods, schedules)
is looked up by name through one of these, so a typo on the command line gets the
same helpful error everywhere.
"""
from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError, ValueError):
    """A name that is not in a registry; the message lists the valid names."""

    def __init__(self, kind: str, name: str, valid: list[str]):
        close = difflib.get_close_matches(name, valid, n=1, cutoff=0.5)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        self.message = f"unknown {kind} '{name}'.{hint} Valid {kind}s: {', '.join(valid)}"
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.message


class Registry(Generic[T]):
    """A mapping from a public name to a class or factory, filled by a decorator."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = obj
            return obj

        return add

    def alias(self, name: str, target: str) -> None:
        """Let `name` stand for the registered `target` (the papers' short names: "at" for "pgd_at")."""
        if name in self._items or name in self._aliases or target not in self._items:
            raise ValueError(f"cannot alias {self.kind} '{name}' to '{target}'")
        self._aliases[name] = target

    def canonical(self, name: str) -> str:
        """The registered name behind `name` (itself unless it is an alias)."""
        return self._aliases.get(name, name)

    def get(self, name: str) -> T:
        try:
            return self._items[self.canonical(name)]
        except KeyError:
            raise UnknownNameError(self.kind, name, self.names() + sorted(self._aliases)) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
