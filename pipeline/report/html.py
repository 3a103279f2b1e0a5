"""HTML building blocks of the report: styles, number formats, tables, inline images.

Cells passed to `table_html` are HTML already: every string that comes from the dataset
(file names, ids, labels, reasons) is escaped by the section that makes the cell.
"""

from __future__ import annotations

import base64
import io
from html import escape

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right}th{background:#f3f3f3}
td.l,th.l{text-align:left}.muted{color:#666;font-size:.9em}.best{font-weight:bold}
.grid{display:flex;flex-wrap:wrap;gap:1em}.grid figure{margin:0}figcaption{font-size:.9em;color:#444}
.montages figure{margin:0 0 .6em 0}.montages img{image-rendering:pixelated;max-width:100%}
code{background:#f5f5f5;padding:0 .2em}
.warn{background:#fff4e0;border-left:4px solid #e69500;padding:.5em .8em}
"""


def fmt(mean: float, std: float | None = None) -> str:
    return f"{100 * mean:.1f}" + (f" ± {100 * std:.1f}" if std is not None else "")


def fmt_interval(ci: dict | None) -> str:
    """ "46.7 [38.3–55.0]": a pooled score with its 95 % interval, in %; "" without one."""
    if not ci:
        return ""
    return f"{100 * ci['pooled']:.1f} [{100 * ci['low']:.1f}–{100 * ci['high']:.1f}]"


def fmt_diff(row: dict) -> str:
    """ "+8.3 [−1.7, +18.3]": a paired pooled difference with its 95 % interval, in points."""
    if row.get("pooled_diff") is None or row["pooled_diff"] != row["pooled_diff"]:
        return "–"
    return (
        f"{100 * row['pooled_diff']:+.1f} [{100 * row['diff_low']:+.1f}, "
        f"{100 * row['diff_high']:+.1f}]"
    )


def table_html(header: list[str], rows: list[list[str]], left: int = 1) -> str:
    """rows hold already-escaped HTML cells; the first `left` columns are left-aligned."""
    head = "".join(f'<th class="{"l" if i < left else ""}">{h}</th>' for i, h in enumerate(header))
    body = "".join(
        "<tr>"
        + "".join(f'<td class="{"l" if i < left else ""}">{c}</td>' for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def png(fig, alt: str = "") -> str:
    """An <img> with the figure inlined as base64 PNG."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def page(body: str) -> str:
    """A self-contained HTML page (styles inline, no network)."""
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>FER pipeline report</title><style>{CSS}</style></head><body>\n{body}\n"
        "</body></html>\n"
    )
