"""The project's error hierarchy: one root, a few subclasses carrying useful attributes."""

from __future__ import annotations

from dataclasses import dataclass


class StreetlightError(Exception):
    """Root of every error the project raises on purpose."""


@dataclass(frozen=True, slots=True)
class ValidationIssue:
    """One thing wrong with an input document or row.

    ``where`` locates it (a JSON-pointer-like path such as ``profiles[0].steps[1].level_frac``,
    or ``row 17``); ``message`` says what is wrong and how to fix it.
    """

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class PolicyError(StreetlightError, ValueError):
    """A policy document is invalid; ``issues`` lists every problem found."""

    def __init__(self, issues: list[ValidationIssue]) -> None:
        self.issues = list(issues)
        lines = "\n".join(f"  - {issue}" for issue in self.issues)
        super().__init__(f"policy is invalid ({len(self.issues)} problem(s)):\n{lines}")


class InventoryError(StreetlightError, ValueError):
    """An inventory file cannot be read at all (bad rows are reported, not raised)."""
