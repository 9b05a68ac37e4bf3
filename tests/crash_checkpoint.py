"""Kill a ledger writer inside its checkpoint, again and again, and check every kill.

Run as ``python crash_checkpoint.py LEDGER KILLS SEED``; prints one JSON line. The
process itself never opens DuckDB (so forking it is safe): a forked writer commits a
batch, says so, and lets go of the file (DuckDB checkpoints on close); it is SIGKILLed
a random moment after saying so, within about one checkpoint's time. A forked checker
then opens the ledger the way every command does and counts the records.
"""

from __future__ import annotations

import json
import os
import random
import select
import signal
import sys
import time

from tailguard.errors import TailguardError
from tailguard.ledger import Ledger
from tailguard.records import make_records

BATCH = 20


def writer(path: str, tag: int, w: int) -> None:
    led = Ledger.open(path)
    for b in range(1_000_000):
        texts = [f"kill {tag} batch {b} row {i}" for i in range(BATCH)]
        led.add_records(make_records(texts, origin="human", source="h"))
        os.write(w, b"C")  # committed: the checkpoint comes next
        led.release()
        os.write(w, b"D")


def checker(path: str, w: int) -> None:
    try:
        with Ledger.open(path) as led:
            n = led.con.execute("SELECT count(*) FROM records").fetchone()[0]
        os.write(w, json.dumps({"count": n}).encode())
    except TailguardError as exc:
        os.write(w, json.dumps({"refused": str(exc)}).encode())


def forked(target, *args) -> tuple[int, int]:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            target(*args, w)
        finally:
            os._exit(0)
    os.close(w)
    return pid, r


def main(path: str, kills: int, seed: int) -> dict:
    rng = random.Random(seed)
    held = inside = ragged = 0
    failures: list[str] = []
    committed = 0
    checkpoint = 0.005  # a running mean of one checkpoint's time (s)
    for k in range(kills):
        pid, r = forked(writer, path, k)
        target = rng.randint(1, 2)  # the how-many-th checkpoint to kill in
        seen, started, acked = 0, None, 0
        while True:
            ch = os.read(r, 1)
            if ch == b"C":
                seen += 1
                started = time.monotonic()
                if seen == target:
                    break
            elif ch == b"D":
                acked += 1
                checkpoint = 0.8 * checkpoint + 0.2 * (time.monotonic() - started)
            else:
                failures.append(f"kill {k}: the writer died on its own")
                break
        time.sleep(rng.uniform(0, checkpoint * 1.5))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        done = select.select([r], [], [], 0)[0] and os.read(r, 1) == b"D"
        os.close(r)
        inside += not done
        committed += seen * BATCH
        size = os.path.getsize(path)
        ragged += (size - 3 * 4096) % (256 * 1024) != 0
        cpid, cr = forked(checker, path)
        os.waitpid(cpid, 0)
        raw = os.read(cr, 1 << 16)
        os.close(cr)
        out = json.loads(raw) if raw else {"refused": "the checker died"}
        n = out.get("count")
        if n is not None and committed <= n <= committed + BATCH:
            committed = n  # a batch committed just before its "C" counts too
            held += 1
        else:
            failures.append(f"kill {k} ({size:,} bytes): {out}, {committed} committed")
            break
    return {
        "tried": kills,
        "held": held,
        "inside_checkpoint": inside,
        "not_whole_blocks": ragged,
        "records": committed,
        "failures": failures,
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))
