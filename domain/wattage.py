"""Parse the wattage strings that councils type into their street-light inventories.

Theory of operation
-------------------
A value is one or more lamp *heads* separated by ``/`` or ``+`` (``250/85`` is two lanterns on
one pole). Each head is a number of watts, optionally with thousands separators (``1,000``), a
unit (``W``, ``watts``, ``kW``) and a lamp-type word, bracketed or not (``286(LED)``,
``150 W HPS``). The pole's power is the sum of its heads, because the pole is what the power
model and the energy account see.

Blanks and placeholders such as ``Not Specified`` or ``N/A`` are *missing*: a normal state of
council data, not an error, and the importer decides what to substitute. Anything else that does
not parse is an *error* whose reason says what to fix. :func:`parse_wattage` never raises, so an
importer can judge every row of a file and report them all at once.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

#: Most a single pole may draw. The largest road lanterns are ~1 kW per head, so anything above
#: this is far more likely a unit slip (kW written as W, an extra digit) than a real lamp.
MAX_POLE_POWER_W = 5000.0

# Compared after lower-casing and collapsing whitespace.
_MISSING_TOKENS = frozenset(
    {
        "",
        "-",
        "--",
        "?",
        "n/a",
        "na",
        "nan",
        "none",
        "null",
        "not specified",
        "unspecified",
        "unknown",
        "tba",
        "tbc",
    }
)

# Lamp-type words accepted after the number. A closed list, because free text after a number
# ("250 approx", "250 or 400") usually means the value is doubtful and a person should look.
_LAMP_TYPE_WORDS = frozenset(
    {
        "LED",
        "HPS",
        "SON",
        "SON-T",
        "SOX",
        "LPS",
        "MH",
        "CMH",
        "CDM",
        "CPO",
        "CFL",
        "PL",
        "PLL",
        "IND",
        "INDUCTION",
        "MV",
        "MERCURY",
        "MERCURY VAPOR",
        "MERCURY VAPOUR",
        "METAL HALIDE",
        "HALOGEN",
        "INCANDESCENT",
        "INCAND",
        "FLUORESCENT",
    }
)

_HEAD_SEPARATORS = re.compile(r"[/+]")
# Thousands separators only in proper groups, so a European decimal comma ("1,5") is refused
# rather than silently read as fifteen.
_NUMBER = re.compile(r"(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]*)?|\.[0-9]+")
_UNIT = re.compile(r"(kw|watts?|w)(?![a-z])", re.IGNORECASE)
_NEGATIVE = re.compile(r"[-\u2212]\s*[0-9.]")

_EXAMPLES = "write watts as a number such as '250', '250/85' or '66 (LED)'"


class WattageStatus(enum.StrEnum):
    OK = "ok"
    MISSING = "missing"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class WattageParse:
    """The result of :func:`parse_wattage`.

    ``power_w`` is the pole's total rated power in watts (``None`` unless ``status`` is ok);
    ``heads_w`` the power of each head in the order written; ``lamp_type_hint`` the lamp-type
    words found (upper case, distinct, joined by ``/``, empty when none); ``reason`` explains a
    missing or error status and is empty when ok.
    """

    power_w: float | None
    heads_w: tuple[float, ...]
    lamp_type_hint: str
    status: WattageStatus
    reason: str


class _HeadError(Exception):
    """Internal: one head did not parse; carries the reason for the caller's WattageParse."""


def _error(reason: str) -> WattageParse:
    return WattageParse(None, (), "", WattageStatus.ERROR, reason)


def _parse_head(head: str, text: str) -> tuple[float, str]:
    """Watts and lamp-type hint of one head; raises :class:`_HeadError` with the reason."""
    if _NEGATIVE.match(head):
        raise _HeadError(f"wattage must be positive, got {head!r}")
    number = _NUMBER.match(head)
    if number is None:
        raise _HeadError(f"{text!r} is not a wattage; {_EXAMPLES}")
    power_w = float(number.group().replace(",", ""))
    rest = head[number.end() :].strip()
    unit = _UNIT.match(rest)
    if unit is not None:
        if unit.group(1).lower() == "kw":
            power_w *= 1000.0
        rest = rest[unit.end() :].strip()
    if rest.startswith("(") and rest.endswith(")"):
        rest = rest[1:-1].strip()
    hint = " ".join(rest.upper().split())
    if hint and hint not in _LAMP_TYPE_WORDS:
        raise _HeadError(
            f"unrecognised text {rest!r} after {number.group()!r} in {text!r}; "
            "expected only a unit (W, kW) or a lamp type such as LED or HPS"
        )
    if power_w <= 0.0:
        raise _HeadError(f"wattage must be positive, got {head!r}")
    return power_w, hint


def parse_wattage(text: str) -> WattageParse:
    """Parse a council wattage string such as ``"250"``, ``"250/85"`` or ``"66 (LED)"``.

    Returns the pole's total power in watts and the per-head powers; see the module docstring
    for the accepted forms. Never raises: problems come back as ``status`` error with a reason.
    """
    stripped = text.strip()
    if " ".join(stripped.lower().split()) in _MISSING_TOKENS:
        return WattageParse(None, (), "", WattageStatus.MISSING, "no wattage given")

    heads_w: list[float] = []
    hints: list[str] = []
    for head in _HEAD_SEPARATORS.split(stripped):
        head = head.strip()
        if not head:
            return _error(f"{text!r} has an empty lamp head around a '/' or '+'; {_EXAMPLES}")
        try:
            power_w, hint = _parse_head(head, text)
        except _HeadError as err:
            return _error(str(err))
        heads_w.append(power_w)
        if hint and hint not in hints:
            hints.append(hint)

    total_w = sum(heads_w)
    # ``not <=`` also catches inf from absurdly long digit strings.
    if not total_w <= MAX_POLE_POWER_W:
        return _error(
            f"{text!r} is {total_w:g} W, more than the {MAX_POLE_POWER_W:g} W one pole can draw; "
            "check the unit (kW or W) and the digits"
        )
    return WattageParse(total_w, tuple(heads_w), "/".join(hints), WattageStatus.OK, "")
