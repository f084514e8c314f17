"""Conversions: physical units (length, mass, temperature, volume, speed, data) and currencies (sample rates)."""

from __future__ import annotations

import difflib
import math
from typing import Annotated, Any

from pydantic import Field

from shared.errors import ToolArgumentsInvalid

__all__ = ["CURRENCY_RATES_DATE", "UNITS", "USD_RATES", "convert_units", "currency_convert"]

# unit -> (dimension, factor to the dimension's base unit: metre, kilogram, litre, metre/second, byte)
UNITS: dict[str, tuple[str, float]] = {
    # length
    "mm": ("length", 0.001), "cm": ("length", 0.01), "m": ("length", 1.0), "km": ("length", 1000.0),
    "um": ("length", 1e-6), "nm": ("length", 1e-9),
    "in": ("length", 0.0254), "ft": ("length", 0.3048), "yd": ("length", 0.9144), "mi": ("length", 1609.344),
    "nmi": ("length", 1852.0),
    # mass
    "mg": ("mass", 1e-6), "g": ("mass", 0.001), "kg": ("mass", 1.0), "t": ("mass", 1000.0),
    "oz": ("mass", 0.028349523125), "lb": ("mass", 0.45359237), "st": ("mass", 6.35029318),
    "short_ton": ("mass", 907.18474), "long_ton": ("mass", 1016.0469088),
    # volume
    "ml": ("volume", 0.001), "cl": ("volume", 0.01), "dl": ("volume", 0.1), "l": ("volume", 1.0),
    "m3": ("volume", 1000.0), "cm3": ("volume", 0.001),
    "tsp": ("volume", 0.00492892159375), "tbsp": ("volume", 0.01478676478125), "fl_oz": ("volume", 0.0295735295625),
    "cup": ("volume", 0.2365882365), "pt": ("volume", 0.473176473), "qt": ("volume", 0.946352946),
    "gal": ("volume", 3.785411784), "imp_gal": ("volume", 4.54609), "imp_pt": ("volume", 0.56826125),
    # speed
    "m/s": ("speed", 1.0), "km/h": ("speed", 1000.0 / 3600.0), "mph": ("speed", 0.44704),
    "knot": ("speed", 0.514444444444), "ft/s": ("speed", 0.3048),
    # data (bytes; SI prefixes are powers of 1000, IEC prefixes powers of 1024)
    "bit": ("data", 0.125), "B": ("data", 1.0),
    "kB": ("data", 1e3), "MB": ("data", 1e6), "GB": ("data", 1e9), "TB": ("data", 1e12), "PB": ("data", 1e15),
    "KiB": ("data", 1024.0), "MiB": ("data", 1024.0**2), "GiB": ("data", 1024.0**3), "TiB": ("data", 1024.0**4),
    "kbit": ("data", 125.0), "Mbit": ("data", 125e3), "Gbit": ("data", 125e6),
    # temperature (converted by formula, see _to_kelvin)
    "C": ("temperature", 1.0), "F": ("temperature", 1.0), "K": ("temperature", 1.0), "R": ("temperature", 1.0),
}
_ALIASES: dict[str, str] = {
    "meter": "m", "meters": "m", "metre": "m", "metres": "m", "kilometer": "km", "kilometers": "km",
    "kilometre": "km", "centimeter": "cm", "centimeters": "cm", "millimeter": "mm", "millimeters": "mm",
    "micrometer": "um", "µm": "um", "nanometer": "nm",
    "inch": "in", "inches": "in", "foot": "ft", "feet": "ft", "yard": "yd", "yards": "yd",
    "mile": "mi", "miles": "mi", "nautical_mile": "nmi",
    "gram": "g", "grams": "g", "kilogram": "kg", "kilograms": "kg", "milligram": "mg", "tonne": "t", "tonnes": "t",
    "ounce": "oz", "ounces": "oz", "pound": "lb", "pounds": "lb", "lbs": "lb", "stone": "st",
    "liter": "l", "liters": "l", "litre": "l", "litres": "l", "milliliter": "ml", "milliliters": "ml",
    "gallon": "gal", "gallons": "gal", "us_gal": "gal", "quart": "qt", "pint": "pt", "cups": "cup",
    "teaspoon": "tsp", "tablespoon": "tbsp", "floz": "fl_oz", "cubic_meter": "m3", "m^3": "m3",
    "kph": "km/h", "kmh": "km/h", "mps": "m/s", "knots": "knot", "kn": "knot", "fps": "ft/s",
    "celsius": "C", "°c": "C", "fahrenheit": "F", "°f": "F", "kelvin": "K", "rankine": "R",
    "bits": "bit", "b": "bit", "byte": "B", "bytes": "B", "kb": "kB", "kilobyte": "kB", "megabyte": "MB",
    "gigabyte": "GB", "terabyte": "TB", "kibibyte": "KiB", "mebibyte": "MiB", "gibibyte": "GiB", "tebibyte": "TiB",
}
_FOLDED = {unit.lower(): unit for unit in UNITS if UNITS[unit][0] != "data"} | {
    alias.lower(): unit for alias, unit in _ALIASES.items()
}


def _unit(name: str, field: str) -> tuple[str, str, float]:
    unit = name if name in UNITS else _FOLDED.get(name.strip().lower())
    if unit is None:
        close = difflib.get_close_matches(name, list(UNITS) + list(_ALIASES), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ToolArgumentsInvalid(f"unknown unit {name!r}{hint}", field=field)
    dimension, factor = UNITS[unit]
    return unit, dimension, factor


def _to_kelvin(value: float, unit: str) -> float:
    return {"C": value + 273.15, "F": (value - 32.0) * 5.0 / 9.0 + 273.15, "K": value, "R": value * 5.0 / 9.0}[unit]


def _from_kelvin(kelvin: float, unit: str) -> float:
    return {"C": kelvin - 273.15, "F": (kelvin - 273.15) * 9.0 / 5.0 + 32.0, "K": kelvin, "R": kelvin * 9.0 / 5.0}[
        unit
    ]


def convert_units(value: float, from_unit: str, to_unit: str) -> dict[str, Any]:
    """Convert a quantity between units of length, mass, temperature, volume, speed or digital data.

    Units: length mm cm m km um nm in ft yd mi nmi; mass mg g kg t oz lb st short_ton long_ton; volume ml cl dl l
    cm3 m3 tsp tbsp fl_oz cup pt qt gal (US) imp_gal imp_pt; speed m/s km/h mph knot ft/s; temperature C F K R;
    data bit B kB MB GB TB PB (powers of 1000) KiB MiB GiB TiB (powers of 1024) kbit Mbit Gbit. Common names
    ("miles", "celsius", "pounds") work too.

    Args:
        value: The quantity to convert.
        from_unit: The unit of value, e.g. "km" or "F".
        to_unit: The unit to convert to; must measure the same dimension.
    """
    source, dimension, source_factor = _unit(from_unit, "args.from_unit")
    target, target_dimension, target_factor = _unit(to_unit, "args.to_unit")
    if dimension != target_dimension:
        raise ToolArgumentsInvalid(
            f"cannot convert {dimension} ({source}) to {target_dimension} ({target})", field="args.to_unit"
        )
    if dimension == "temperature":
        kelvin = _to_kelvin(value, source)
        if kelvin < -1e-9:
            raise ToolArgumentsInvalid(f"{value} {source} is below absolute zero", field="args.value")
        result = _from_kelvin(kelvin, target)
    else:
        result = value * source_factor / target_factor
    return {
        "value": value,
        "from_unit": source,
        "to_unit": target,
        "dimension": dimension,
        "result": float(f"{result:.12g}") if math.isfinite(result) else result,
    }


CURRENCY_RATES_DATE = "2024-01-02"
"""Date of the sample rates below (approximate reference rates of that day)."""
USD_RATES: dict[str, float] = {
    "USD": 1.0, "EUR": 0.9131, "GBP": 0.7877, "JPY": 142.0, "CHF": 0.8493, "CAD": 1.3316, "AUD": 1.4738,
    "NZD": 1.5946, "CNY": 7.1134, "INR": 83.24, "SEK": 10.132, "NOK": 10.206, "DKK": 6.8103, "PLN": 3.9648,
    "BRL": 4.8921, "MXN": 17.016, "ZAR": 18.436, "SGD": 1.3226, "HKD": 7.8106, "KRW": 1300.9,
}
"""Units of each currency per US dollar: SAMPLE RATES for demos and tests, not live market data."""


def currency_convert(
    amount: float,
    from_currency: Annotated[str, Field(min_length=3, max_length=3)],
    to_currency: Annotated[str, Field(min_length=3, max_length=3)],
) -> dict[str, Any]:
    """Convert money between currencies using a fixed table of SAMPLE exchange rates dated 2024-01-02.

    The rates are embedded and never change: use this for demos and tests, not for real prices. Currencies: USD EUR
    GBP JPY CHF CAD AUD NZD CNY INR SEK NOK DKK PLN BRL MXN ZAR SGD HKD KRW.

    Args:
        amount: The amount of money in from_currency.
        from_currency: ISO 4217 code of the amount's currency, e.g. "EUR".
        to_currency: ISO 4217 code to convert to, e.g. "JPY".
    """
    codes = []
    for code, field in ((from_currency, "args.from_currency"), (to_currency, "args.to_currency")):
        upper = code.upper()
        if upper not in USD_RATES:
            raise ToolArgumentsInvalid(
                f"no sample rate for {code!r}; available: {', '.join(sorted(USD_RATES))}", field=field
            )
        codes.append(upper)
    rate = USD_RATES[codes[1]] / USD_RATES[codes[0]]
    return {
        "amount": amount,
        "from_currency": codes[0],
        "to_currency": codes[1],
        "rate": round(rate, 8),
        "result": round(amount * rate, 4),
        "rates_date": CURRENCY_RATES_DATE,
        "note": "sample rates embedded in Weft for demos; not live market data",
    }
