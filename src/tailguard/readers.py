"""Reading user data into Arrow, with errors that name the file, the line and the field.

The happy path is columnar (pyarrow's JSON, CSV and Parquet readers). Only when a
reader fails, or a column is missing, null or of the wrong type, do we look at
the file line by line, and only to say exactly where the problem is.
"""

from __future__ import annotations

import codecs
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from tailguard import limits
from tailguard.errors import InputError

FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
}


#: Longest line a JSONL or CSV file may have (bytes): refused, with its line, before parsing.
MAX_LINE_BYTES = 16 << 20
#: Deepest JSON nesting of a line: parsers recurse, and very deep input crashes them.
MAX_JSON_DEPTH = 64
#: Bytes scanned at once by the pre-parse checks (whole lines, so memory stays bounded).
_SCAN_BLOCK = 32 << 20


def read_table(
    data: Any,
    *,
    text_field: str = "text",
    label_field: str | None = None,
    parent_field: str | None = None,
    allow_empty: bool = False,
) -> tuple[pa.Table, str]:
    """Return ``(table, name)`` for a path, Arrow table, pandas DataFrame or HF Dataset.

    Checks that ``text_field`` is present, a string and never null, and that the
    optional fields are present. Empty texts are refused (a record must say
    something) unless ``allow_empty``: a model's sample may be empty, and that is
    a measurement.
    """
    if isinstance(data, str | Path):
        path = Path(data)
        table = _read_file(path, text_field)
        name, where = path.stem, str(path)
    else:
        table, name = _from_object(data), type(data).__name__
        where = f"<{name}>"
    _check_fields(
        table,
        where,
        text_field,
        label_field,
        parent_field,
        jsonl=isinstance(data, str | Path) and _format(Path(data)) == "jsonl",
        allow_empty=allow_empty,
    )
    return table, name


def _format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(
            f"unknown file type {path.suffix or '(none)'!r}; use .jsonl, .parquet or .csv",
            file=str(path),
        )
    return fmt


def _read_file(path: Path, text_field: str) -> pa.Table:
    if not path.exists():
        raise InputError("file does not exist", file=str(path))
    if path.is_dir():
        raise InputError("is a directory, not a file", file=str(path))
    fmt = _format(path)
    if path.stat().st_size == 0:
        raise InputError("file is empty", file=str(path))
    if fmt in {"jsonl", "csv"}:
        check_text_file(path, json_depth=fmt == "jsonl")
    else:
        _check_parquet_schema(path)
    try:
        if fmt == "parquet":
            table = pq.read_table(path)
        elif fmt == "csv":
            table = pacsv.read_csv(path)
        else:
            table = pajson.read_json(
                _without_bom(path), read_options=pajson.ReadOptions(block_size=1 << 26)
            )
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, UnicodeDecodeError) as exc:
        if fmt == "jsonl":
            _locate_jsonl_error(path, text_field)
        raise InputError(f"cannot read {fmt}: {_short(exc)}", file=str(path)) from exc
    if table.num_rows == 0:
        raise InputError("file has no records", file=str(path))
    names = table.column_names
    if len(set(names)) < len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise InputError(f"column {dup!r} appears more than once", file=str(path), line=1)
    return table


def _check_parquet_schema(path: Path) -> None:
    """Refuse, before any data is read, a Parquet column name that is not UTF-8 and a
    column nested deeper than :data:`~tailguard.limits.NESTING_MAX`."""
    try:
        schema = pq.read_schema(path)
    except UnicodeDecodeError as exc:
        raise InputError(
            f"a column name is not UTF-8 text (byte {exc.object[exc.start]:#04x} at "
            f"position {exc.start} of {bytes(exc.object[:40])!r})",
            file=str(path),
        ) from None
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"cannot read parquet: {_short(exc)}", file=str(path)) from None
    for field in schema:
        depth = _nesting(field.type)
        if depth > limits.NESTING_MAX:
            raise InputError(
                f"column {field.name!r} is nested {depth} levels deep; "
                f"at most {limits.NESTING_MAX} are read",
                file=str(path),
                field=field.name,
            )


def _nesting(kind: pa.DataType) -> int:
    """How many lists, structs and maps ``kind`` holds inside each other (0: flat)."""
    depth, todo = 0, [(kind, 0)]
    while todo:
        kind, level = todo.pop()
        depth = max(depth, level)
        todo.extend((kind.field(i).type, level + 1) for i in range(kind.num_fields))
    return depth


def _without_bom(path: Path) -> Path | pa.BufferReader:
    """The file, or its bytes after a UTF-8 byte order mark (editors on Windows write one)."""
    with path.open("rb") as fh:
        if fh.read(3) != codecs.BOM_UTF8:
            return path
        return pa.BufferReader(fh.read())


def check_text_file(path: Path, *, json_depth: bool) -> None:
    """Refuse, before any parser sees it, a file with invalid UTF-8, a line longer than
    :data:`MAX_LINE_BYTES` or (JSONL) nesting deeper than :data:`MAX_JSON_DEPTH`.

    Vectorised: newlines and brackets are found with numpy, block by block; only a
    line with more opening brackets than the limit is scanned exactly (brackets inside
    strings do not count).
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    line0, carry, offset = 1, b"", 0
    with path.open("rb") as fh:
        while True:
            block = fh.read(_SCAN_BLOCK)
            if offset == 0 and block.startswith(codecs.BOM_UTF8):  # a byte order mark
                block, offset = block[3:], 3
            final = not block
            data = carry + block
            try:
                decoder.decode(block, final=final)
            except UnicodeDecodeError as exc:
                bad = len(carry) + exc.start
                raise InputError(
                    f"invalid UTF-8 at byte {offset + exc.start}",
                    file=str(path),
                    line=line0 + data.count(b"\n", 0, bad),
                ) from None
            cut = len(data) if final else data.rfind(b"\n") + 1
            whole, carry = data[:cut], data[cut:]
            _check_lines(whole, line0, path, json_depth)
            if len(carry) > MAX_LINE_BYTES:
                raise InputError(
                    f"line longer than {MAX_LINE_BYTES:,} bytes",
                    file=str(path),
                    line=line0 + whole.count(b"\n"),
                )
            line0 += whole.count(b"\n")
            offset += len(block)
            if final:
                return


def _check_lines(data: bytes, line0: int, path: Path, json_depth: bool) -> None:
    if not data:
        return
    buf = np.frombuffer(data, np.uint8)
    ends = np.flatnonzero(buf == 10)
    starts = np.concatenate(([0], ends + 1))
    stops = np.concatenate((ends, [len(buf)]))
    long = np.flatnonzero(stops - starts > MAX_LINE_BYTES)
    if long.size:
        raise InputError(
            f"line longer than {MAX_LINE_BYTES:,} bytes", file=str(path), line=line0 + long[0]
        )
    if not json_depth:
        return
    _check_objects(buf, starts, stops, line0, path)
    opens = np.flatnonzero((buf == ord("{")) | (buf == ord("[")))
    per_line = np.searchsorted(opens, stops) - np.searchsorted(opens, starts)
    for i in np.flatnonzero(per_line > MAX_JSON_DEPTH):
        depth = _json_depth(buf[starts[i] : stops[i]])
        if depth > MAX_JSON_DEPTH:
            raise InputError(
                f"JSON nested {depth:,} deep (the limit is {MAX_JSON_DEPTH})",
                file=str(path),
                line=line0 + int(i),
            )


def _check_objects(
    buf: np.ndarray, starts: np.ndarray, stops: np.ndarray, line0: int, path: Path
) -> None:
    """Every non-blank JSONL line must be one object: ``{`` first and ``}`` last.

    Checked before parsing because pyarrow's JSON reader can crash (not fail) on
    lines of bare values such as ``null,null :null``. Only the bytes at each line's
    ends are looked at (a ``\\r`` before the newline allowed); the rare line that
    does not start with ``{`` and end with ``}`` is stripped and checked exactly.
    """
    n = len(buf)
    if n == 0:
        return
    last = stops - 1
    last = np.where((last >= starts) & (buf[np.maximum(last, 0)] == ord("\r")), last - 1, last)
    nonempty = last >= starts
    ok = (
        nonempty
        & (buf[np.minimum(starts, n - 1)] == ord("{"))
        & (buf[np.maximum(last, 0)] == ord("}"))
    )
    data = buf.tobytes() if (~ok).any() else b""
    for i in np.flatnonzero(~ok):
        line = data[starts[i] : stops[i]].strip(_BLANK)
        if line and not (line[:1] == b"{" and line[-1:] == b"}"):
            raise InputError(
                "malformed JSON: expected one object per line ({...})",
                file=str(path),
                line=line0 + int(i),
            )


#: What counts as blank around a JSONL line.
_BLANK = b" \t\r\n\f\v"


def _json_depth(line: np.ndarray) -> int:
    """Deepest bracket nesting of one JSON line, ignoring brackets inside strings."""
    quote = line == ord('"')
    backslash = line == ord("\\")
    idx = np.arange(len(line))
    last_plain = np.maximum.accumulate(np.where(backslash, -1, idx))
    # A quote is escaped when an odd run of backslashes precedes it.
    run = np.concatenate(([0], idx[:-1] - last_plain[:-1]))
    real = quote & (run % 2 == 0)
    inside = (np.cumsum(real) % 2 == 1) & ~real
    step = np.zeros(len(line), np.int64)
    step[((line == ord("{")) | (line == ord("["))) & ~inside] = 1
    step[((line == ord("}")) | (line == ord("]"))) & ~inside] = -1
    return int(np.cumsum(step).max(initial=0))


def _locate_jsonl_error(path: Path, text_field: str) -> None:
    """Find and raise the first bad line of a JSONL file (only on the error path)."""
    kinds: dict[str, str] = {}
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"invalid UTF-8 at byte {exc.start}", file=str(path), line=lineno
                ) from None
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(
                    f"malformed JSON: {exc.msg} at column {exc.colno}", file=str(path), line=lineno
                ) from None
            if not isinstance(value, dict):
                raise InputError(
                    f"expected a JSON object, got {type(value).__name__}",
                    file=str(path),
                    line=lineno,
                )
            if text_field in value and not isinstance(value[text_field], str):
                got = type(value[text_field]).__name__
                raise InputError(
                    f"expected text, got {got}", file=str(path), line=lineno, field=text_field
                )
            for key, item in value.items():
                kind = _json_kind(item)
                first = kinds.setdefault(key, kind)
                if kind != "null" and first == "null":
                    kinds[key] = kind
                elif kind not in {"null", first}:
                    raise InputError(
                        f"expected {first} as on earlier lines, got {kind}",
                        file=str(path),
                        line=lineno,
                        field=key,
                    )


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "text", list: "list", dict: "object"}[type(value)]


def _from_object(data: Any) -> pa.Table:
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    module = type(data).__module__
    if module.startswith("pandas"):
        return pa.Table.from_pandas(data, preserve_index=False)
    if module.startswith("datasets"):
        return data.with_format("arrow")[:]
    raise InputError(
        f"cannot ingest a {type(data).__name__}: give a file path, a pyarrow.Table, "
        "a pandas.DataFrame or a datasets.Dataset"
    )


def _check_fields(
    table: pa.Table,
    where: str,
    text_field: str,
    label_field: str | None,
    parent_field: str | None,
    *,
    jsonl: bool,
    allow_empty: bool = False,
) -> None:
    if table.num_rows == 0:
        raise InputError("no records", file=where)
    for field in (text_field, label_field, parent_field):
        if field is not None and field not in table.column_names:
            raise InputError(
                f"missing field (columns are {table.column_names})",
                file=where,
                line=_position(1, jsonl),
                field=field,
            )
    text = table.column(text_field)
    if pa.types.is_string(text.type) or pa.types.is_large_string(text.type):
        _check_utf8(text, where, text_field, jsonl=jsonl)
    else:
        bad = _first_non_string(where, text_field) if jsonl else 1
        raise InputError(
            f"expected text, got {text.type}",
            file=where,
            line=_position(bad, jsonl),
            field=text_field,
        )
    if text.null_count:
        first = pc.index(pc.is_null(text), True).as_py() + 1
        raise InputError(
            "missing text (null or absent)",
            file=where,
            line=_position(first, jsonl, where),
            field=text_field,
        )
    blank = pc.equal(pc.utf8_trim_whitespace(text), "")
    if not allow_empty and pc.any(blank).as_py():
        first = pc.index(blank, True).as_py() + 1
        raise InputError(
            "empty text (nothing but whitespace)",
            file=where,
            line=_position(first, jsonl, where if jsonl else None),
            field=text_field,
        )
    for field in (label_field, parent_field):
        if field is None:
            continue
        column = table.column(field)
        kind = column.type
        if pa.types.is_nested(kind) or pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            valid = pc.is_valid(column)
            first = pc.index(valid, True).as_py() + 1 if pc.any(valid).as_py() else 1
            raise InputError(
                f"expected text or a number, got {kind}",
                file=where,
                line=_position(first, jsonl, where if jsonl else None),
                field=field,
            )
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            _check_utf8(column, where, field, jsonl=jsonl)


def _check_utf8(text: pa.ChunkedArray, where: str, field: str, *, jsonl: bool) -> None:
    """Arrow readers do not all validate UTF-8; find the first bad row if any."""
    try:
        text.validate(full=True)
    except pa.ArrowInvalid:
        if jsonl:
            _locate_jsonl_error(Path(where), field)
        for row, value in enumerate(text.cast(pa.binary()).to_pylist(), start=1):
            try:
                value is None or value.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"invalid UTF-8 at byte {exc.start}", file=where, line=row, field=field
                ) from None


def _position(row: int, jsonl: bool, where: str | None = None) -> int:
    """Row ``row`` (1-based) as a file line: JSONL skips blank lines, so count them."""
    if not jsonl or where is None:
        return row
    seen = 0
    with open(where, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if raw.strip():
                seen += 1
                if seen == row:
                    return lineno
    return row


def _first_non_string(where: str, field: str) -> int:
    with open(where, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if raw.strip() and not isinstance(json.loads(raw).get(field), str):
                return lineno
    return 1


def _short(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:300]
