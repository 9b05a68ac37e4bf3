"""Stored fingerprints of records (by content id), so later runs need not compute them again."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from tailguard.errors import TailguardError
from tailguard.ledger.connection import LedgerBase
from tailguard.ledger.schema import (
    FINGERPRINT_TABLE,
)


def _fixed_width(words: pa.Array, width: int, kind: str) -> np.ndarray:
    """Stored lists of 64-bit words, all holding ``width`` bytes, as a ``(n, width)`` uint8
    array."""
    n_words = -(-width // 8)
    offsets = words.offsets.to_numpy()
    if not (np.diff(offsets) == n_words).all():
        raise TailguardError(f"stored fingerprints of {kind!r} are not {width} bytes each")
    flat = words.values.to_numpy()[offsets[0] : offsets[-1]]
    return flat.view(np.uint8).reshape(len(words), n_words * 8)[:, :width]


#: Stored fingerprints read per batch by :meth:`Ledger.fingerprints`.
_FINGERPRINT_BATCH = 65_536


class FingerprintStore(LedgerBase):
    """Fixed-width fingerprints kept per kind and content id."""

    def fingerprints(
        self, kind: str, ids: pa.Array | pa.ChunkedArray, width: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Stored fixed-width fingerprints of records (by content id), for ``kind``.

        Returns ``(found, values)``: which ids have one, and a ``(len(ids), width)``
        uint8 array holding them (zeros where not found). ``kind`` names what was
        computed and how (a verifier's fingerprint with its version and parameters),
        so a change of either never reads an old value. Ids are content hashes, so a
        stored value holds for the record in any reference set and any run.
        """
        n = len(ids)
        found = np.zeros(n, bool)
        values = np.zeros((n, width), np.uint8)
        if n == 0 or not self._has_table(FINGERPRINT_TABLE):
            return found, values
        con = self.con.cursor()
        try:
            con.register("wanted", pa.table({"pos": np.arange(n, dtype=np.int64), "id": ids}))
            # Batch by batch into ``values``: a reservoir's signatures are held once, not twice.
            for hit in con.sql(
                f"SELECT w.pos, f.value FROM wanted w JOIN {FINGERPRINT_TABLE} f "
                "ON f.kind = ? AND f.id = w.id",
                params=[kind],
            ).to_arrow_reader(_FINGERPRINT_BATCH):
                pos = hit.column(0).to_numpy()
                found[pos] = True
                values[pos] = _fixed_width(hit.column(1), width, kind)
        finally:
            con.close()
        return found, values

    def store_fingerprints(
        self, kind: str, ids: pa.Array | pa.ChunkedArray, values: np.ndarray
    ) -> int:
        """Keep fingerprints (one row of ``values`` per id, any fixed-width dtype) of
        ``kind`` for later runs; ids already stored are left as they are. Returns the
        number added (0 on a read-only ledger).

        Values are stored as lists of 64-bit words, not blobs: DuckDB writes a
        million 512-byte MinHash signatures about five times faster that way.
        """
        if self.read_only or len(ids) == 0:
            return 0
        raw = np.ascontiguousarray(values).view(np.uint8).reshape(len(ids), -1)
        words = -(-raw.shape[1] // 8)
        if raw.shape[1] != words * 8:  # padded to whole words (a view otherwise: no copy)
            raw = np.pad(raw, ((0, 0), (0, words * 8 - raw.shape[1])))
        value = pa.ListArray.from_arrays(
            pa.array(np.arange(0, (len(ids) + 1) * words, words, dtype=np.int32)),
            pa.array(raw.view(np.uint64).reshape(-1)),
        )
        with self._transaction() as con:
            con.register("new_fp", pa.table({"id": ids, "value": value}))
            added = con.execute(
                f"INSERT INTO {FINGERPRINT_TABLE} SELECT DISTINCT ON (n.id) ?, n.id, n.value "
                f"FROM new_fp n ANTI JOIN (SELECT id FROM {FINGERPRINT_TABLE} WHERE kind = ?) f "
                "ON f.id = n.id",
                [kind, kind],
            ).fetchall()[0][0]
            con.unregister("new_fp")
        return int(added)
