"""Dates as permit registers write them, read without guessing.

A date read the wrong way round moves a permit's validity by months and silently changes which
changes it excuses, so a value is only read when its meaning is certain: year first (ISO,
`2024/4/1`, `2024年4月1日`, `20240401`), a date or datetime field, an Excel serial day number, or
day and month in a declared order. `01/04/2020` without a declared order, and any two-digit
year (`1/2/3`), are refused rather than guessed.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime, timedelta
from typing import Literal

import numpy as np
import pandas as pd

DateOrder = Literal["DMY", "MDY", "YMD"]

#: Open-ended approvals (长期 long-term, 永久 permanent) never expire.
OPEN_ENDED = ("长期", "永久", "长期有效")

#: Day numbers of spreadsheets (Excel, WPS, LibreOffice) count from this day.
_SERIAL_EPOCH = date(1899, 12, 30)
#: Serial day numbers read as dates: five digits, 1927-05-18 to 2173-10-14.
_SERIAL_RANGE = (10000, 99999)

_CHINESE = re.compile(r"^(\d{4})年(\d{1,2})月(\d{1,2})日?$")
_COMPACT = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_SEPARATED = re.compile(r"^(\d{1,4})[-/.](\d{1,2})[-/.](\d{1,4})(?:[ T]\d{1,2}:\d{2}\S*)?$")
_SERIAL = re.compile(r"^(\d{5})(?:\.\d+)?$")


class UnreadableDate(ValueError):
    """The value is not a date in any form eoleads reads."""


class AmbiguousDate(ValueError):
    """The value looks like a date but could be read more than one way."""


class DayMonthOrder(AmbiguousDate):
    """Day and month, with the year last, could be either way round: a declared order decides."""


class ShortYear(AmbiguousDate):
    """A two-digit year: no declared order says which century."""


def parse_date(value: object, order: DateOrder | None = None, open_ended: bool = False) -> date | None:
    """One cell as a date; None when blank. `order` says how day/month/year-last values read.

    With `open_ended`, 长期/永久 (an end that never comes) read as the latest date there is.
    """
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, datetime | np.datetime64):
        return pd.Timestamp(value).date()
    if isinstance(value, date):
        return value
    if isinstance(value, int | float | np.number) and not isinstance(value, bool):
        return _from_number(float(value))
    text = unicodedata.normalize("NFKC", str(value)).strip()  # full-width digits and slashes too
    if not text:
        return None
    if open_ended and text in OPEN_ENDED:
        return date.max
    if match := _SERIAL.match(text):
        return _from_serial(int(match[1]))
    if match := _CHINESE.match(text) or _COMPACT.match(text):
        return _make(text, *map(int, match.groups()))
    match = _SEPARATED.match(text)
    if not match:
        raise UnreadableDate("not a date")
    first, second, last = match.groups()
    if len(first) == 4:
        return _make(text, int(first), int(second), int(last))
    if len(last) != 4:
        raise ShortYear("the year is not written in full")
    a, b = int(first), int(second)
    if order in ("DMY", "MDY"):
        day, month = (a, b) if order == "DMY" else (b, a)
    elif b <= 12 and (a > 12 or a == b):
        day, month = a, b
    elif a <= 12 < b:
        day, month = b, a
    elif a <= 12 and b <= 12:
        raise DayMonthOrder("day and month could be either way round")
    else:
        raise UnreadableDate(f"no such date ({text})")
    return _make(text, int(last), month, day)


def _from_number(value: float) -> date:
    """A numeric cell: an Excel serial day number, or 20240401 stored as a number."""
    if value != value // 1:
        return _from_serial(int(value))  # a serial with a time of day
    if 19000101 <= value <= 21991231:
        text = str(int(value))
        return _make(text, int(text[:4]), int(text[4:6]), int(text[6:]))
    return _from_serial(int(value))


def _from_serial(days: int) -> date:
    if not _SERIAL_RANGE[0] <= days <= _SERIAL_RANGE[1]:
        raise UnreadableDate("a number that is not a spreadsheet date")
    return _SERIAL_EPOCH + timedelta(days=days)


def _make(text: str, year: int, month: int, day: int) -> date:
    try:
        return date(year, month, day)
    except ValueError:
        raise UnreadableDate(f"no such date ({text})") from None
