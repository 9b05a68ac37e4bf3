"""Verifiers that execute or evaluate: generated code against its tests, math answers.

``CodeTests`` records carry JSON content ``{"code": "...", "tests": "..."}``;
``MathAnswer`` records carry ``{"answer": ..., "reference": ...}`` (or the
reference in a table column named by ``reference_column``).
"""

from __future__ import annotations

import json
import re
import signal
import threading
from contextlib import contextmanager
from fractions import Fraction
from typing import Any

import numpy as np
import pyarrow as pa

from tailguard.errors import InputError
from tailguard.gate import sandbox
from tailguard.gate.base import Verifier, verdicts
from tailguard.gate.math_limits import TooLarge, check_size
from tailguard.gate.worker import Worker, check_seconds


def _json_object(text: str, keys: tuple[str, ...]) -> tuple[dict[str, Any] | None, str | None]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"content is not JSON: {exc.msg} (line {exc.lineno}, col {exc.colno})"
    if not isinstance(value, dict):
        return None, f"content is JSON {type(value).__name__}, not an object"
    missing = [k for k in keys if k not in value]
    if missing:
        return None, f"content lacks key(s) {missing}"
    return value, None


def describe(result: sandbox.SandboxResult, limits: sandbox.Limits) -> tuple[bool, str, str]:
    """A sandbox result as (passed, code, detail): which test failed, what limit was hit."""
    rep = result.report or {}
    outcome = rep.get("outcome")
    where = ""
    if rep.get("test"):
        where = f" in {rep['test']}"
    elif rep.get("line"):
        where = f" at {'solution.py' if rep.get('stage') == 'code' else 'tests.py'}:{rep['line']}"
    if result.oom_kills:
        why = f"memory ({limits.memory_mb} MiB over all its processes)"
        return False, "memory_limit", f"{why}: {result.oom_kills} process(es) killed"
    if result.status == "timeout":
        return False, "timeout", f"still running after {limits.wall_seconds:g}s (wall clock)"
    if result.signal in ("SIGXCPU", "SIGKILL") and outcome is None:
        return False, "cpu_limit", f"CPU time ({limits.cpu_seconds}s), {result.signal}"
    if result.signal == "SIGXFSZ":
        return False, "file_size_limit", f"file size ({limits.file_size_mb} MiB)"
    if outcome == "passed" and result.status != "exited":  # the main process did not finish
        return False, "killed", f"killed by {result.signal} after its tests passed"
    if outcome == "passed":
        return True, "ok", f"passed {rep.get('tests', 0)} test function(s) and all asserts"
    if outcome == "failed":
        return False, "tests_failed", f"failing test{where}: {rep.get('error')}"
    if outcome == "memory":
        return False, "memory_limit", f"memory ({limits.memory_mb} MiB){where}"
    if outcome == "file_size":
        return False, "file_size_limit", f"file size ({limits.file_size_mb} MiB){where}"
    if outcome == "disk":
        quota = f"{limits.disk_mb} MiB, {limits.inodes} files"
        return False, "disk_limit", f"working directory full ({quota}){where}: {rep.get('error')}"
    if outcome == "exception":
        return False, "exception", f"exception{where}: {rep.get('error')}"
    if outcome == "exit":
        return False, "exited", f"exited before the tests finished ({rep.get('error')})"
    if result.signal:
        return False, "killed", f"killed by {result.signal}"
    tail = result.stderr.strip().splitlines()[-1:] or [""]
    return False, "no_result", f"exit status {result.returncode} {tail[0][:200]}".strip()


class CodeTests(Verifier):
    """Run generated Python code against its tests in the sandbox.

    Content: ``{"code": "...", "tests": "..."}``. The tests run after the code in
    the same module namespace: top-level ``assert`` statements, then every
    ``test*`` function in order. The verdict says what happened: passed, the
    failing test, an exception, a timeout, a resource limit; and, where this
    machine could not isolate the network or the user, says that too.
    """

    kind = "code_tests"
    version = "3"  # 3: a forked child's report never passes; no socket but AF_UNIX
    codes = (
        "bad_content",
        "tests_failed",
        "exception",
        "timeout",
        "cpu_limit",
        "memory_limit",
        "file_size_limit",
        "disk_limit",
        "exited",
        "killed",
        "no_result",
        "cleanup_failed",
    )

    def __init__(
        self,
        *,
        wall_seconds: float = 10.0,
        cpu_seconds: int = 10,
        memory_mb: int = 1024,
        file_size_mb: int = 16,
        open_files: int = 64,
        processes: int = 32,
        disk_mb: int = 64,
        inodes: int = 8192,
        cpu_cores: float = 1.0,
    ) -> None:
        self.wall_seconds, self.cpu_seconds, self.memory_mb = wall_seconds, cpu_seconds, memory_mb
        self.file_size_mb, self.open_files, self.processes = file_size_mb, open_files, processes
        self.disk_mb, self.inodes, self.cpu_cores = disk_mb, inodes, cpu_cores
        sandbox.Limits(**self.params())  # a bad limit is refused here, not at run time

    @property
    def limits(self) -> sandbox.Limits:
        return sandbox.Limits(**self.params())

    def verify(self, batch: pa.Table) -> pa.Table:
        limits = self.limits
        passed, codes, details, scores = [], [], [], []
        for text in batch.column("content").to_pylist():  # one process per record
            value, err = _json_object(text, ("code", "tests"))
            if err:
                passed.append(False)
                codes.append("bad_content")
                details.append(err)
                scores.append(None)
                continue
            result = sandbox.run_tests(str(value["code"]), str(value["tests"]), limits=limits)
            ok, code, why = describe(result, limits)
            missing = [k for k, v in result.isolation.items() if not v]
            if missing:
                why += f" [not isolated here: {', '.join(missing)}]"
            if result.cleanup_errors:  # logged too; a run that left something never passes
                ok, code = False, "cleanup_failed"
                why += f" [sandbox cleanup failed: {'; '.join(result.cleanup_errors)[:300]}]"
            passed.append(ok)
            codes.append(code)
            details.append(why)
            scores.append(result.seconds)
        return verdicts(passed, codes, details, score=scores)


_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_EXPR_OK = re.compile(r"^[\d\s+\-*/^().,a-z]*$")
_NO_ANSWER = "no answer"
#: What marks an answer as LaTeX or an equation (the cases math-verify reads).
_LATEX = re.compile(r"\\[a-zA-Z%]|=")
_FUNCS = {"sqrt", "pi", "e", "log", "ln", "exp", "sin", "cos", "tan", "i"}


def _clean(answer: Any) -> str:
    s = str(answer).strip()
    boxed = re.search(r"\\boxed\{([^{}]*)\}", s)
    if boxed:
        s = boxed.group(1)
    s = s.strip().strip("$").strip()
    s = re.sub(r"(?<=\d),(?=\d{3}\b)", "", s)  # 1,000 -> 1000
    s = s.replace("\\frac", "").replace("}{", ")/(").replace("{", "(").replace("}", ")")
    s = s.replace("\\cdot", "*").replace("\\times", "*").replace("\\pi", "pi")
    return s.rstrip(".").strip().lower()


def _exact(s: str) -> Fraction | None:
    try:
        if _NUMBER.match(s):
            return Fraction(s)
        if re.match(r"^[+-]?\d+\s*/\s*[+-]?\d+$", s):
            num, den = s.split("/")
            return Fraction(int(num), int(den))
    except (ValueError, ZeroDivisionError):
        return None
    return None


@contextmanager
def _time_limit(seconds: float):
    """Interrupt slow Python-level symbolic work with SIGALRM (main thread only).

    A soft limit, for a clear answer where it can: C code does not see the signal,
    so the worker process's kill (:mod:`tailguard.gate.worker`) is the hard one.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    fired: list[bool] = []

    def alarm(signum: int, frame: Any) -> None:
        fired.append(True)
        raise TimeoutError(f"no answer within {seconds:g}s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    if fired:  # math-verify catches the TimeoutError and answers "not equal": it was not
        raise TimeoutError(f"no answer within {seconds:g}s")


def _sympy(s: str) -> Any:
    if not _EXPR_OK.match(s) or set(re.findall(r"[a-z]+", s)) - _FUNCS:
        raise ValueError(f"not a number or a simple expression: {s!r}")
    from sympy import nsimplify  # noqa: F401 - keeps sympy's import cost off the fast path
    from sympy.parsing.sympy_parser import (
        convert_xor,
        implicit_multiplication_application,
        parse_expr,
        standard_transformations,
    )

    local = {"ln": __import__("sympy").log, "i": __import__("sympy").I}
    return parse_expr(
        s,
        local_dict=local,
        evaluate=True,
        transformations=(
            *standard_transformations,
            implicit_multiplication_application,
            convert_xor,
        ),
    )


def answers_equal(
    answer: Any, reference: Any, *, tolerance: float = 1e-9, timeout: float = 2.0
) -> tuple[bool, str]:
    """Compare two answers by value: exact rationals, then sympy, then ``math-verify``.

    The hand-written normaliser is fast and handles plain numbers and sympy-style
    expressions; LaTeX it cannot read (``\\dfrac``, ``\\sqrt{}``, ``x=3``, percentages)
    goes to ``math-verify``, the maintained LaTeX answer parser (measured on
    ``tests/data/math_answer_pairs.csv``; see docs/gate.md). The comparison runs in a
    worker process killed after ``timeout`` seconds (:class:`TimeoutError`); a value
    too large to compute raises :class:`~tailguard.gate.math_limits.TooLarge` at once;
    answers that cannot be compared raise :class:`ValueError`.
    """
    code, detail = compare_answers([(answer, reference)], tolerance=tolerance, timeout=timeout)[0]
    if code == "timeout":
        raise TimeoutError(detail)
    if code == "too_large":
        raise TooLarge(detail)
    if code == "cannot_compare":
        raise ValueError(detail)
    return code == "equal", detail


def compare_answers(
    pairs: list[tuple[Any, Any]], *, tolerance: float = 1e-9, timeout: float = 2.0
) -> list[tuple[str, str]]:
    """Compare (answer, reference) pairs in the math worker, each within ``timeout`` seconds.

    Each result is ``(code, detail)``, code ``equal``, ``different``, ``timeout``,
    ``too_large`` or ``cannot_compare``.
    """
    items = [(a, r, tolerance, timeout) for a, r in pairs]
    out: list[tuple[str, str]] = []
    for outcome in _MATH_WORKER.map(items, timeout):
        if outcome.kind == "ok":
            out.append(outcome.value)
        elif outcome.kind == "timeout":
            out.append(("timeout", f"{outcome.value} (worker process killed)"))
        else:
            out.append(("cannot_compare", str(outcome.value)[:300]))
    return out


def _compare_item(item: tuple[Any, Any, float, float]) -> tuple[str, str]:
    """One comparison as the worker answers it (never raising)."""
    answer, reference, tolerance, timeout = item
    try:
        check_size(answer)
        check_size(reference)
        ok, why = _answers_equal_unbounded(answer, reference, tolerance=tolerance, timeout=timeout)
    except TimeoutError as exc:
        return ("timeout", str(exc))
    except TooLarge as exc:
        return ("too_large", str(exc))
    except Exception as exc:  # noqa: BLE001 - an unparsable answer
        return ("cannot_compare", f"{type(exc).__name__}: {exc}"[:300])
    return ("equal" if ok else "different", why)


def _import_math() -> None:
    """Import sympy and math-verify here once, so every forked worker starts warm."""
    import math_verify  # noqa: F401
    import sympy  # noqa: F401
    import sympy.parsing.sympy_parser  # noqa: F401


#: The worker that runs every math comparison of this process (one child, reused).
_MATH_WORKER = Worker(_compare_item, prepare=_import_math)


def _answers_equal_unbounded(
    answer: Any, reference: Any, *, tolerance: float = 1e-9, timeout: float = 2.0
) -> tuple[bool, str]:
    """The comparison itself, in this process: only the sympy part has a (soft) limit."""
    try:
        return _answers_equal(answer, reference, tolerance=tolerance, timeout=timeout)
    except TimeoutError:
        raise
    except Exception as exc:  # noqa: BLE001 - the normaliser cannot read it: try the LaTeX parser
        latex = any(_LATEX.search(str(v)) for v in (answer, reference))
        verdict = latex_equal(answer, reference, timeout=timeout) if latex else None
        if verdict is None:
            raise exc from None
        return verdict


def latex_equal(answer: Any, reference: Any, *, timeout: float = 2.0) -> tuple[bool, str] | None:
    """Compare two LaTeX answers with ``math-verify``; ``None`` when either does not parse."""
    import logging

    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    with _time_limit(timeout):
        gold = parse(_in_math(reference), parsing_timeout=None)
        pred = parse(_in_math(answer), parsing_timeout=None)
        if not gold or not pred:
            return None
        ok = bool(verify(gold, pred, timeout_seconds=None))
    return ok, ("equal (math-verify)" if ok else f"{pred[-1]} != {gold[-1]} (math-verify)")


def _in_math(value: Any) -> str:
    """An answer as math-verify reads it: inside ``$...$`` unless already delimited or boxed."""
    s = str(value).strip()
    return s if s.startswith("$") or "\\boxed" in s else f"${s}$"


def _answers_equal(
    answer: Any, reference: Any, *, tolerance: float = 1e-9, timeout: float = 2.0
) -> tuple[bool, str]:
    """The hand-written comparison: exact rationals first, then sympy, within a timeout."""
    a, r = _clean(answer), _clean(reference)
    if not a:
        return False, _NO_ANSWER
    ea, er = _exact(a), _exact(r)
    if ea is not None and er is not None:
        return (ea == er), ("equal" if ea == er else f"{a} != {r}")
    import sympy  # imported outside the time limit: a cold import can take seconds
    import sympy.parsing.sympy_parser  # noqa: F401

    with _time_limit(timeout):
        va, vr = _sympy(a), _sympy(r)
        diff = sympy.simplify(va - vr)
        if diff == 0:
            return True, "equal (symbolically)"
        try:
            num = complex(sympy.N(diff))
            scale = max(1.0, abs(complex(sympy.N(vr))))
        except (TypeError, ValueError):
            return False, f"{a} != {r}"
        if abs(num) <= tolerance * scale:
            return True, "equal (numerically)"
        return False, f"{a} != {r}"


class MathAnswer(Verifier):
    """Compare a final answer with the reference answer by value.

    Content: ``{"answer": ..., "reference": ...}``; or set ``reference_column`` to
    read the reference from a column of the record table (e.g. ``label``) with
    content ``{"answer": ...}`` or the bare answer. Integers, fractions,
    decimals, ``\\boxed{}``/``\\frac{}{}`` and simple expressions (through sympy, with
    a ``timeout``) compare by value, and LaTeX the normaliser cannot read goes to
    ``math-verify`` (``\\dfrac``, roots, ``x=3``, percentages). ``tolerance`` is
    relative, for floats.
    """

    kind = "math_answer"
    version = "2"
    codes = ("bad_content", "no_answer", "wrong_answer", "timeout", "too_large", "cannot_compare")

    def __init__(
        self, *, reference_column: str | None = None, tolerance: float = 1e-9, timeout: float = 2.0
    ) -> None:
        if tolerance < 0:
            raise InputError("tolerance must be >= 0", field="tolerance")
        check_seconds(timeout)
        self.reference_column, self.tolerance, self.timeout = reference_column, tolerance, timeout

    def verify(self, batch: pa.Table) -> pa.Table:
        texts = batch.column("content").to_pylist()
        if self.reference_column is not None:
            if self.reference_column not in batch.column_names:
                raise InputError(
                    f"no column {self.reference_column!r} for references",
                    field=self.reference_column,
                )
            refs = batch.column(self.reference_column).to_pylist()
        else:
            refs = [None] * len(texts)
        contents: list[tuple[dict[str, Any] | None, str | None]] = []
        for text, ref in zip(texts, refs, strict=True):
            if ref is None:
                contents.append(_json_object(text, ("answer", "reference")))
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                value = text
            value = value if isinstance(value, dict) else {"answer": value}
            contents.append(
                ({**value, "reference": ref}, None) if "answer" in value else (None, "no 'answer'")
            )
        pairs = [(v["answer"], v["reference"]) for v, err in contents if err is None]
        results = iter(compare_answers(pairs, tolerance=self.tolerance, timeout=self.timeout))
        passed = np.zeros(len(texts), bool)
        codes: list[str | None] = []
        reasons: list[str] = []
        for i, (_, err) in enumerate(contents):
            code, why = ("bad_content", err) if err else next(results)
            if code == "different":
                code = "no_answer" if why == _NO_ANSWER else "wrong_answer"
            passed[i] = code == "equal"
            codes.append(None if passed[i] else code)
            reasons.append(why)
        return verdicts(passed, codes, reasons)
