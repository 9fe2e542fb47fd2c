"""The dossier as web pages: an index (overview map and list of leads) and one page per lead.

Plain HTML with its style inline and relative links, so the folder opens from a USB stick on
an offline machine and prints from any browser.
"""

from __future__ import annotations

from html import escape

import pandas as pd

from pipeline.outputs.dossier.wording import CONFIDENCE_NOTE, DISCLAIMER, formatted

_STYLE = """
body { font-family: "Noto Sans CJK SC", "Source Han Sans SC", "Microsoft YaHei", "PingFang SC", sans-serif;
       margin: 2em auto; max-width: 60em; color: #111; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #555; padding: 0.2em 0.5em; }
th { background: #eee; }
.warning { border: 2px solid #b00; padding: 0.5em 1em; }
img { max-width: 100%; border: 1px solid #999; }
dt { font-weight: bold; float: left; clear: left; width: 7em; }
dd { margin-left: 8em; margin-bottom: 0.3em; }
"""


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="zh-CN">\n<head>\n<meta charset="utf-8">\n<title>{escape(title)}</title>\n'
            f"<style>{_STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")


def _table(table: pd.DataFrame, links: list[str]) -> str:
    head = "".join(f"<th>{escape(str(c))}</th>" for c in table.columns)
    rows = []
    for link, (_, row) in zip(links, formatted(table).iterrows(), strict=True):
        cells = [f'<a href="{escape(link)}">{escape(str(v))}</a>' if c == "线索编号" else escape(str(v))
                 for c, v in row.items()]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table>\n<tr>{head}</tr>\n" + "\n".join(rows) + "\n</table>"


def _warnings(warnings: list[str]) -> str:
    if not warnings:
        return ""
    items = "".join(f"<li>{escape(w)}</li>" for w in warnings)
    return f'<div class="warning"><strong>注意</strong><ul>{items}</ul></div>'


def index_html(title: str, summary: list[str], table: pd.DataFrame, links: list[str], overview: str | None,
               pdf: str | None, warnings: list[str]) -> str:
    """The index: what the run looked at, warnings first, the overview map and the list of leads."""
    parts = [f"<h1>{escape(title)}</h1>", _warnings(warnings),
             "<ul>" + "".join(f"<li>{escape(s)}</li>" for s in summary) + "</ul>",
             f'<p><a href="{escape(pdf)}">打印版（PDF）</a></p>' if pdf else "",
             f'<img src="{escape(overview)}" alt="线索总览图">' if overview else "",
             f"<h2>线索列表（{len(table)}条）</h2>",
             _table(table, links) if len(table) else "<p>本次运行没有线索。</p>",
             f"<p>{escape(DISCLAIMER)}{escape(CONFIDENCE_NOTE)}。</p>"]
    return _page(title, "\n".join(p for p in parts if p))


def lead_html(title: str, facts: list[tuple[str, str]], image: str | None, back: str) -> str:
    """One lead: its facts and reason as text (to copy into a case file) and its printed page as an image."""
    items = "\n".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in facts)
    parts = [f'<p><a href="{escape(back)}">← 返回线索列表</a></p>', f"<h1>{escape(title)}</h1>",
             f"<dl>\n{items}\n</dl>",
             f'<img src="{escape(image)}" alt="前后期影像">' if image else "<p>未出图（见索引页的注意事项）。</p>",
             f"<p>{escape(DISCLAIMER)}</p>"]
    return _page(title, "\n".join(parts))
