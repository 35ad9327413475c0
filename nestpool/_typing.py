"""Type variables and aliases shared by the package; no runtime behaviour."""

from __future__ import annotations

from typing import ParamSpec, TypeVar

__all__ = ["P", "R", "T"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
