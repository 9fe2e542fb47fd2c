"""Tables as Excel workbooks for the office's registers: the dossier's list of leads and the lead
register's export, written the same way (one sheet, header kept in view, readable widths)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from openpyxl import Workbook
from openpyxl.utils import get_column_letter

from pipeline.atomic import atomic_path


def write_workbook(path: Path, table: pd.DataFrame, sheet_name: str,
                   links: tuple[str, list[str]] | None = None) -> None:
    """`table` as the one sheet `sheet_name` of `path`, written atomically; `links` (a column and one
    target per row) makes that column's cells hyperlinks, as the lead ids to their pages."""
    book = Workbook()
    sheet = book.active
    sheet.title = sheet_name
    sheet.append(list(table.columns))
    for row in table.itertuples(index=False):
        sheet.append([_cell(v) for v in row])
    if links is not None:
        column, targets = links
        index = list(table.columns).index(column) + 1
        for r, target in enumerate(targets, start=2):
            sheet.cell(r, index).hyperlink = target
    for i, column in enumerate(table.columns, start=1):
        longest = max([len(str(column)), *(len(str(v)) for v in table[column])])
        sheet.column_dimensions[get_column_letter(i)].width = min(2 + 1.6 * longest, 60)
    sheet.freeze_panes = "A2"
    with atomic_path(path) as tmp:
        book.save(tmp)


def _cell(value: object) -> object:
    """A value openpyxl writes: NumPy scalars as Python ones, missing values as empty cells."""
    if value is None or (isinstance(value, float) and value != value) or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return value.item() if hasattr(value, "item") else value
