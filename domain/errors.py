"""The project's error hierarchy: one root, a few subclasses carrying useful attributes."""

from __future__ import annotations

from collections.abc import Sequence
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


class DocumentError(StreetlightError, ValueError):
    """A document (policy, scenario, configuration...) is invalid; ``issues`` lists every
    problem found, each with its location. ``source`` names the file when known."""

    #: What the message calls the document ("policy", "scenario", ...).
    document = "document"

    def __init__(self, issues: Sequence[ValidationIssue], source: str = "") -> None:
        self.issues = list(issues)
        self.source = source
        lines = "\n".join(f"  - {issue}" for issue in self.issues)
        where = f" {source}" if source else ""
        super().__init__(
            f"{self.document}{where} is invalid ({len(self.issues)} problem(s)):\n{lines}"
        )


class PolicyError(DocumentError):
    """A policy document is invalid; ``issues`` lists every problem found."""

    document = "policy"


class InventoryError(StreetlightError, ValueError):
    """An inventory file cannot be read at all (bad rows are reported, not raised)."""
