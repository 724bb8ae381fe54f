"""The one dict round trip of the settings dataclasses built from config mappings.

A frozen dataclass that inherits :class:`DictFields` gets ``to_dict`` (its fields) and
``from_dict`` (a mapping whose unknown keys are refused by name, with the known ones listed:
a misspelt config key never passes silently). ``dict_label`` names the settings in that
error (``"unknown clip settings ['frame']; known: [...]"``).
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import ClassVar


def check_keys(data: dict, known, what: str) -> None:
    """ValueError naming the keys of ``data`` outside ``known`` (``what``: their kind)."""
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; known: {sorted(known)}")


class DictFields:
    """``to_dict``/``from_dict`` for a settings dataclass (see the module docstring)."""

    dict_label: ClassVar[str] = "settings"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def settings_label(cls) -> str:
        return cls.dict_label

    @classmethod
    def from_dict(cls, data: dict | None):
        data = dict(data or {})
        check_keys(data, {f.name for f in fields(cls)}, cls.settings_label())
        return cls(**data)
