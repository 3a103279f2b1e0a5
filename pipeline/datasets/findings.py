"""What the audit's findings are made of: the label normal form its variant check compares,
and the findings table with its messages' listings (lines, ids, "and N more")."""

from __future__ import annotations

import re
import unicodedata

import pandas as pd

COLUMNS = ["check", "severity", "rows", "videos", "message"]
SEVERITIES = ("error", "warning", "info")
SHOWN = 8  # videos named in a message before "and N more"


NUMBER = re.compile(r"^[+-]?(\d+)(\.\d*)?$")


def _number(text: str) -> str:
    """A number as its value ("01", "1.0" → "1"); other text as it is."""
    number = NUMBER.match(text)
    if not number:
        return text
    whole, fraction = number[1].lstrip("0") or "0", (number[2] or "").rstrip("0.")
    sign = "-" if text.startswith("-") and (whole != "0" or fraction) else ""
    return f"{sign}{whole}{'.' + fraction.lstrip('.') if fraction else ''}"


# How two spellings of one label or subject may differ, in the order normal_form undoes it.
FORMS = (
    ("Unicode form", lambda t: unicodedata.normalize("NFKC", t)),
    ("invisible characters", lambda t: "".join(c for c in t if unicodedata.category(c) != "Cf")),
    ("spaces", lambda t: re.sub(r"\s+", " ", t).strip()),
    ("case", str.casefold),
    ("the way the number is written (zero padding, decimals)", _number),
)


def normal_form(label: str) -> str:
    """A label or subject as compared for variants: Unicode NFKC, invisible format characters
    (zero-width spaces…) removed, runs of whitespace as one space, stripped, case folded, and a
    number as its value ("01", "1.0" and "1" are one: a spreadsheet's zero padding and
    decimals)."""
    for _, form in FORMS:
        label = form(label)
    return label


def how_differs(a: str, b: str) -> str:
    """Every way in which two spellings of one normal form differ ("spaces and case")."""
    kinds = []
    for name, form in FORMS:
        x, y = form(a), form(b)
        if a != b and (x != a or y != b):
            kinds.append(name)
        a, b = x, y
    return " and ".join(kinds) or "nothing"


def lines_of(rows: pd.DataFrame) -> str:
    return ";".join(str(int(x)) for x in sorted(rows.line))


def ids_of(rows: pd.DataFrame) -> str:
    return ";".join(rows.sort_values("line").video_id)


def first_few(items: list[str]) -> str:
    """The first SHOWN items and how many more."""
    more = len(items) - SHOWN
    return ", ".join(items[:SHOWN]) + (f" and {more} more" if more > 0 else "")


def named_few(rows: pd.DataFrame, detail=None) -> str:
    """The first videos of `rows` by id (with `detail(row)`), and how many more."""
    return first_few(
        [
            f"{r.video_id}{f' ({detail(r)})' if detail else ''}"
            for r in rows.sort_values("line").itertuples()
        ]
    )


def where_in_sheet(rows: pd.DataFrame) -> str:
    """Where a few rows are, for a message: ", line 9", ", lines 9, 12", ", lines 9, … (20)"."""
    lines = [str(x) for x in sorted(rows.line)]
    shown = ", ".join(lines[:SHOWN]) + (f" … ({len(lines)})" if len(lines) > SHOWN else "")
    return f", line{'s' if len(lines) > 1 else ''} {shown}"


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


class Findings(list):
    """The audit's findings, one dict each; `table()` sorts them by severity."""

    def add(self, check: str, severity: str, rows: pd.DataFrame, message: str) -> None:
        self.append(
            {
                "check": check,
                "severity": severity,
                "rows": lines_of(rows),
                "videos": ids_of(rows),
                "message": message,
            }
        )

    def table(self) -> pd.DataFrame:
        order = {s: i for i, s in enumerate(SEVERITIES)}
        out = pd.DataFrame(list(self), columns=COLUMNS)
        return out.sort_values("severity", key=lambda s: s.map(order), kind="stable")
