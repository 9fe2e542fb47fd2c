from datetime import date, datetime

import numpy as np
import pandas as pd
import pytest

from pipeline.inputs.dates import AmbiguousDate, UnreadableDate, parse_date


@pytest.mark.parametrize(("value", "expected"), [
    ("2024-04-01", date(2024, 4, 1)),
    ("2024/4/1", date(2024, 4, 1)),
    ("2024.04.01", date(2024, 4, 1)),
    ("20240401", date(2024, 4, 1)),
    ("2024-04-01 08:30:00", date(2024, 4, 1)),
    ("2024-04-01T08:30:00Z", date(2024, 4, 1)),
    ("2021年3月4日", date(2021, 3, 4)),
    ("２０２１／３／４", date(2021, 3, 4)),            # full-width digits and slash
    (datetime(2021, 3, 4, 12, 0), date(2021, 3, 4)),   # a DateTime field
    (date(2021, 3, 4), date(2021, 3, 4)),
    (pd.Timestamp("2021-03-04"), date(2021, 3, 4)),
    (np.datetime64("2021-03-04"), date(2021, 3, 4)),
    (44927, date(2023, 1, 1)),                          # Excel serial day numbers
    (44927.75, date(2023, 1, 1)),                       # ... with a time of day
    ("44927", date(2023, 1, 1)),
    (np.int64(20240401), date(2024, 4, 1)),            # 20240401 stored as a number
    ("25/04/2024", date(2024, 4, 25)),                  # day > 12: only one reading
    ("04/25/2024", date(2024, 4, 25)),
    ("04/04/2024", date(2024, 4, 4)),                   # either reading is the same day
])
def test_dates_that_can_be_read_only_one_way(value, expected):
    assert parse_date(value) == expected


@pytest.mark.parametrize("value", [None, "", "  ", float("nan"), pd.NaT])
def test_blank_is_none(value):
    assert parse_date(value) is None


def test_declared_order_reads_day_and_month():
    assert parse_date("01/04/2020", "DMY") == date(2020, 4, 1)
    assert parse_date("01/04/2020", "MDY") == date(2020, 1, 4)
    assert parse_date("2020-01-04", "DMY") == date(2020, 1, 4)  # year first needs no order


@pytest.mark.parametrize("order", [None, "YMD"])
def test_day_and_month_without_order_are_refused(order):
    with pytest.raises(AmbiguousDate, match="either way"):
        parse_date("01/04/2020", order)


@pytest.mark.parametrize(("value", "order"), [("1/2/3", None), ("1/2/3", "DMY"), ("24-04-01", None),
                                              ("01/04/20", "MDY")])
def test_two_digit_years_are_refused(value, order):
    with pytest.raises(AmbiguousDate, match="year is not written in full"):
        parse_date(value, order)


@pytest.mark.parametrize(("value", "order"), [("soon", None), ("2024-04", None), ("2024-02-30", None),
                                              ("04/25/2024", "DMY"), (25.5, None), (7, None)])
def test_values_that_are_no_date_are_unreadable(value, order):
    with pytest.raises(UnreadableDate):
        parse_date(value, order)


def test_open_ended_only_where_asked():
    assert parse_date("长期", open_ended=True) == date.max
    with pytest.raises(UnreadableDate):
        parse_date("长期")
