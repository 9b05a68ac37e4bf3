"""Built-in human data that ships with Debian packages (never downloaded from a hub).

``fortunes()`` reads the Debian ``fortunes`` package: about 15,000 quotations
written by people, in 43 categories whose sizes are long-tailed, which makes the
categories a natural set of labels for tail metrics. ``wordnet()`` reads the
Debian ``wordnet-base`` package: 117,659 glosses written by lexicographers, in 45
lexical categories, for larger runs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from tailguard.errors import InputError
from tailguard.records import Origin, make_records

FORTUNES_DIR = Path("/usr/share/games/fortunes")
_OVERSTRIKE = re.compile(r"_+\x08+|.\x08|\x08")  # underline runs, overstrikes, strays
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


WORDNET_DIR = Path("/usr/share/wordnet")
#: WordNet's 45 lexicographer files, by number (lexnames(5WN)): the labels of ``wordnet()``.
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute "
    "noun.body noun.cognition noun.communication noun.event noun.feeling noun.food noun.group "
    "noun.location noun.motive noun.object noun.person noun.phenomenon noun.plant "
    "noun.possession noun.process noun.quantity noun.relation noun.shape noun.state "
    "noun.substance noun.time verb.body verb.change verb.cognition verb.communication "
    "verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion "
    "verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()


def wordnet(directory: Path | str = WORDNET_DIR) -> pa.Table:
    """WordNet's glosses as human records, label = lexicographer file (e.g. noun.animal).

    Reads ``data.{noun,verb,adj,adv}`` column-wise: the license header (lines that
    start with two spaces) is skipped, the gloss is what follows `` | ``.
    """
    root = Path(directory)
    files = [root / f"data.{pos}" for pos in ("noun", "verb", "adj", "adv")]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise InputError(
            "WordNet is not installed (Debian package `wordnet-base`: apt-get install "
            "wordnet-base)",
            file=missing[0],
        )
    texts, labels = [], []
    names = pa.array(LEXNAMES)
    for f in files:
        lines = pa.array(f.read_text(encoding="utf-8", errors="replace").splitlines())
        lines = lines.filter(pc.invert(pc.starts_with(lines, "  ")))
        parts = pc.split_pattern(lines, " | ", max_splits=1)
        texts.append(pc.utf8_trim_whitespace(pc.list_element(parts, 1)))
        lexfile = pc.cast(pc.utf8_slice_codeunits(lines, 9, 11), pa.int32())
        labels.append(pc.take(names, lexfile))
    return make_records(
        pa.chunked_array(texts),
        origin=Origin.HUMAN,
        source="wordnet",
        label=pa.chunked_array(labels),
    )


BUILTINS = {"fortunes": fortunes, "wordnet": wordnet}


def builtin(name: str) -> pa.Table:
    """A built-in dataset by name; the error lists the valid names."""
    try:
        loader = BUILTINS[name]
    except KeyError:
        valid = sorted(BUILTINS)
        raise InputError(f"unknown built-in dataset {name!r}; choose one of {valid}") from None
    return loader()
