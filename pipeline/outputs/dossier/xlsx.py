"""The list of leads as an Excel workbook, for the office's registers (the same columns as the index)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from openpyxl import Workbook
from openpyxl.utils import get_column_letter

from pipeline.atomic import atomic_path


def write_xlsx(path: Path, table: pd.DataFrame, links: list[str]) -> None:
    """One sheet, a header row kept in view, each lead id linked to its page; written atomically."""
    book = Workbook()
    sheet = book.active
    sheet.title = "线索"
    sheet.append(list(table.columns))
    for row in table.itertuples(index=False):
        sheet.append([v.item() if hasattr(v, "item") else v for v in row])
    id_column = list(table.columns).index("线索编号") + 1
    for r, link in enumerate(links, start=2):
        sheet.cell(r, id_column).hyperlink = link
    for i, column in enumerate(table.columns, start=1):
        longest = max([len(str(column)), *(len(str(v)) for v in table[column])])
        sheet.column_dimensions[get_column_letter(i)].width = min(2 + 1.6 * longest, 60)
    sheet.freeze_panes = "A2"
    with atomic_path(path) as tmp:
        book.save(tmp)
