"""The report's numbers for people: dollars, counts and shares as text (money stays Decimal)."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal


def usd(value: Decimal | None) -> str:
    """Dollars: "$1,234.56"; cents-scale amounts keep four places ("$0.0421")."""
    if value is None:
        return "—"
    places = Decimal("0.0001") if 0 < abs(value) < 1 else Decimal("0.01")
    return f"${value.quantize(places, ROUND_HALF_UP):,}"


def usd_short(value: float) -> str:
    """Axis labels: "$0", "$350", "$1.2k", "$3.4M" (coordinates are floats already)."""
    for limit, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"${value / limit:.3g}{suffix}"
    return f"${value:.3g}" if value < 1 else f"${value:,.0f}"


def count(value: int | float) -> str:
    """Counts: "1,234"; large ones short: "12.3M"."""
    for limit, suffix in ((1e9, "B"), (1e6, "M")):
        if abs(value) >= limit:
            return f"{value / limit:.3g}{suffix}"
    return f"{value:,.0f}"


def share(part: int | Decimal, whole: int | Decimal) -> str:
    if not whole:
        return "—"
    return f"{Decimal(part) * 100 / Decimal(whole):.1f}%"


def utc(moment: datetime) -> datetime:
    """A time from ClickHouse (naive, in UTC) or Python as an aware UTC datetime."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
