"""Built-in human data that ships with Debian packages (never downloaded from a hub).

``fortunes()`` reads the Debian ``fortunes`` package: about 15,000 quotations
written by people, in 43 categories whose sizes are long-tailed, which makes the
categories a natural set of labels for tail metrics.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa

from tailguard.errors import InputError
from tailguard.records import Origin, make_records

FORTUNES_DIR = Path("/usr/share/games/fortunes")
_OVERSTRIKE = re.compile(r".\x08")
_SEPARATOR = re.compile(r"^%\s*$", re.MULTILINE)


def fortunes(directory: Path | str = FORTUNES_DIR) -> pa.Table:
    """The fortunes corpus as human records, label = category (the file's name).

    Skips the ``*.dat`` indexes and the ``*.u8`` links, strips backspace
    overstrikes (old bold/underline tricks) and empty items.
    """
    root = Path(directory)
    if not root.is_dir():
        raise InputError(
            "the fortunes corpus is not installed (Debian package `fortunes`: "
            "apt-get install fortunes)",
            file=str(root),
        )
    texts: list[str] = []
    labels: list[str] = []
    for path in sorted(root.iterdir()):
        if path.suffix in {".dat", ".u8"} or path.is_symlink() or not path.is_file():
            continue
        raw = path.read_text(encoding="utf-8", errors="replace")
        items = [_OVERSTRIKE.sub("", item).strip() for item in _SEPARATOR.split(raw)]
        items = [item for item in items if item]
        texts.extend(items)
        labels.extend([path.name] * len(items))
    if not texts:
        raise InputError("no fortunes found", file=str(root))
    return make_records(texts, origin=Origin.HUMAN, source="fortunes", label=labels)


BUILTINS = {"fortunes": fortunes}


def builtin(name: str) -> pa.Table:
    """A built-in dataset by name; the error lists the valid names."""
    try:
        loader = BUILTINS[name]
    except KeyError:
        valid = sorted(BUILTINS)
        raise InputError(f"unknown built-in dataset {name!r}; choose one of {valid}") from None
    return loader()
