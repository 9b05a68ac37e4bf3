"""Where the CLI prints: user and data text always literal, markup only from code.

Labels, run names, reasons, paths, verdict details and error messages can hold square
brackets (``[/INST]``). Rich would read them as markup and fail or swallow them, so
both consoles have markup off (a plain string, a table cell or title prints as is) and
styling goes through :func:`styled`: its template is code's markup, its values are
spliced in afterwards as plain text and never parsed.
"""

from __future__ import annotations

import re
import string
import sys
from typing import Any

from rich.console import Console
from rich.text import Text

# Logs and pipes get 150 columns rather than 80, so the tables stay readable.
console = Console(width=None if sys.stdout.isatty() else 150, markup=False)
err_console = Console(stderr=True, soft_wrap=True, markup=False)

# Private-use characters mark where a value goes while the template's markup is parsed.
_SLOT = re.compile("\ue000(\\d+)\ue001")
_FORMATTER = string.Formatter()


def styled(template: str, *args: Any, **kwargs: Any) -> Text:
    """``template.format(*args, **kwargs)`` with the template's rich markup applied and
    every value kept literal (it inherits the style of the markup around it)."""
    values: list[str] = []
    marked: list[str] = []
    auto = 0
    for literal, field, spec, conversion in _FORMATTER.parse(template):
        marked.append(literal)
        if field is None:
            continue
        if field == "":
            field, auto = str(auto), auto + 1
        value, _ = _FORMATTER.get_field(field, args, kwargs)
        value = _FORMATTER.convert_field(value, conversion)
        values.append(_FORMATTER.format_field(value, spec or ""))
        marked.append(f"\ue000{len(values) - 1}\ue001")
    text = Text.from_markup("".join(marked))
    out = Text(style=text.style, justify=text.justify, no_wrap=text.no_wrap, end=text.end)
    pos = 0
    for slot in _SLOT.finditer(text.plain):
        out.append_text(text[pos : slot.start()])
        value = Text(values[int(slot.group(1))])
        for span in text[slot.start() : slot.end()].spans:
            value.stylize(span.style)
        out.append_text(value)
        pos = slot.end()
    out.append_text(text[pos:])
    return out


def say(template: str, *args: Any, **kwargs: Any) -> None:
    """Print :func:`styled` text on standard output (values literal, no highlighting)."""
    console.print(styled(template, *args, **kwargs), highlight=False)


def warn(template: str, *args: Any, **kwargs: Any) -> None:
    """Print :func:`styled` text on standard error."""
    err_console.print(styled(template, *args, **kwargs), highlight=False)
