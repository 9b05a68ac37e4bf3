"""The JSONL pre-scan looks only at each line's ends: it must flag exactly the lines a
plain per-line check flags (the first one, with its line number)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailguard.errors import InputError
from tailguard.readers import check_text_file

_LINE = st.text(alphabet='{}[]" \t\rab:,', max_size=12)


def _first_bad(lines: list[str]) -> int | None:
    """The reference: a non-blank line must start with ``{`` and end with ``}``."""
    for i, line in enumerate(lines, start=1):
        core = line.strip(" \t\r\n\f\v")
        if core and not (core.startswith("{") and core.endswith("}")):
            return i
    return None


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(_LINE, min_size=1, max_size=20), newline_at_end=st.booleans())
def test_prescan_flags_the_first_line_a_per_line_check_flags(
    tmp_path_factory: pytest.TempPathFactory, lines: list[str], newline_at_end: bool
) -> None:
    path = Path(tmp_path_factory.mktemp("scan")) / "x.jsonl"
    path.write_bytes(("\n".join(lines) + ("\n" if newline_at_end else "")).encode())
    expected = _first_bad(lines)
    if expected is None:
        check_text_file(path, json_depth=True)
        return
    with pytest.raises(InputError, match="one object per line") as err:
        check_text_file(path, json_depth=True)
    assert err.value.line == expected
