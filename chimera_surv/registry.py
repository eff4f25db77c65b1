"""Named, config-built components (timm style), so a bundle is fully described by JSON.

Every family (encoders, fusions, heads, losses, priors, calibrations) owns one ``Registry``.
A component is registered under a name and rebuilt from ``{"name": ..., **kwargs}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """A name → constructor map with a readable error for unknown names."""

    def __init__(self, family: str) -> None:
        self.family = family
        self._entries: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(fn: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise KeyError(f"{self.family} '{name}' is already registered")
            self._entries[name] = fn
            return fn

        return decorator

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none"
            raise KeyError(f"unknown {self.family} '{name}' (known: {known})") from None

    def build(self, config: dict[str, Any] | str, **overrides: Any) -> T:
        """Build from ``"name"`` or ``{"name": ..., **kwargs}``; overrides win over the config."""
        if isinstance(config, str):
            config = {"name": config}
        kwargs = {k: v for k, v in config.items() if k != "name"}
        kwargs.update(overrides)
        return self.get(config["name"])(**kwargs)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries
