"""A verifier's quality, measured on a labelled sample (``tailguard gate --audit``).

How far a project may lean synthetic depends on how good its verifier is, not on
the rule that it has one: each configured verifier is run on texts known good or
known bad, and its precision (of what it accepts, the share good), recall (of the
good, the share it accepts) and specificity (of the bad, the share it rejects) are
counted, each with a Wilson interval, since audit samples are small and a share
of 1.0 from 20 texts is not a certainty. Pure: the ledger stores the rows.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tailguard.errors import InputError, check_fraction
from tailguard.readers import read_table
from tailguard.records import AUDIT_ROWS, normalise_content

if TYPE_CHECKING:
    from tailguard.gate.gate import Gate

#: The confidence of the intervals stored with an audit.
CONFIDENCE = 0.95


def wilson(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float | None, float | None]:
    """The Wilson score interval of ``k`` successes in ``n`` trials (``None`` if ``n`` is 0).

    Unlike the normal approximation it stays inside [0, 1] and does not collapse to a
    point at 0 or n successes, which is where a good verifier's audit lands.
    """
    if n == 0:
        return None, None
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + confidence / 2))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def read_sample(
    path: str | Path, *, text_field: str = "text", good_field: str = "good"
) -> tuple[pa.Table, np.ndarray, str]:
    """``(table of id and content, known-good flags, the file's sha256)`` of a labelled
    sample; a missing, null or non-boolean label is an :class:`InputError` naming the
    file, the line and the field."""
    path = Path(path)
    table, _ = read_table(path, text_field=text_field, label_field=good_field)
    jsonl = path.suffix.lower() == ".jsonl"
    good = table.column(good_field)
    if not pa.types.is_boolean(good.type) or good.null_count:
        row = _first_bad_label(path, good_field, good) if jsonl else _first_null(good)
        raise InputError(
            "expected true or false (is the text known good?)",
            file=str(path),
            line=row,
            field=good_field,
        )
    flags = good.to_numpy(zero_copy_only=False).astype(bool)
    if flags.all() or not flags.any():
        raise InputError(
            "the sample needs both known-good and known-bad texts to measure precision, "
            f"recall and specificity; every label is {bool(flags[0])}",
            file=str(path),
            field=good_field,
        )
    content = normalise_content(table.column(text_field))
    ids = pa.array([f"audit-{i}" for i in range(table.num_rows)], pa.string())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return pa.table({"id": ids, "content": content}), flags, digest


def _first_null(column: pa.ChunkedArray) -> int:
    if not pa.types.is_boolean(column.type):
        valid = pc.is_valid(column)
        return pc.index(valid, True).as_py() + 1 if pc.any(valid).as_py() else 1
    return pc.index(pc.is_null(column), True).as_py() + 1


def _first_bad_label(path: Path, field: str, column: pa.ChunkedArray) -> int | None:
    """The file line of the first label that is not ``true`` or ``false``."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if raw.strip() and not isinstance(json.loads(raw).get(field), bool):
                return lineno
    return None


def audit(
    gate: Gate,
    sample: pa.Table,
    good: np.ndarray,
    *,
    sample_name: str,
    digest: str,
    confidence: float = CONFIDENCE,
) -> pa.Table:
    """Each of ``gate``'s verifiers measured on ``sample`` (:data:`AUDIT_ROWS`, one row
    per verifier, in the gate's order). ``good[i]`` says whether text ``i`` is good."""
    check_fraction(confidence, "confidence", one=False)
    good = np.asarray(good, dtype=bool)
    if len(good) != sample.num_rows:
        raise InputError(f"{len(good)} labels for {sample.num_rows} texts", field="good")
    result = gate.run(sample)
    n_good, n_bad = int(good.sum()), int((~good).sum())
    rows = []
    for v in gate.verifiers:
        mine = result.verdicts.filter(pc.equal(result.verdicts["verifier"], v.name))
        by_id = dict(zip(mine["id"].to_pylist(), mine["passed"].to_pylist(), strict=True))
        passed = np.array([bool(by_id.get(i)) for i in sample["id"].to_pylist()], dtype=bool)
        ag, ab = int((passed & good).sum()), int((passed & ~good).sum())
        row: dict[str, object] = {
            "verifier": v.name,
            "kind": v.kind,
            "version": str(v.version),
            "params": v.params_json(),
            "sample": sample_name,
            "sample_digest": digest,
            "n_good": n_good,
            "n_bad": n_bad,
            "accepted_good": ag,
            "accepted_bad": ab,
            "confidence": confidence,
        }
        for share, k, n in (
            ("precision", ag, ag + ab),
            ("recall", ag, n_good),
            ("specificity", n_bad - ab, n_bad),
        ):
            low, high = wilson(k, n, confidence)
            row[share] = k / n if n else None
            row[f"{share}_low"], row[f"{share}_high"] = low, high
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=AUDIT_ROWS)
