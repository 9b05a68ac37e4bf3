"""Built-in content verifiers: JSON Schema, policy rules, text quality, any function."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from tailguard.errors import InputError
from tailguard.gate import minhash
from tailguard.gate.base import ERROR_CODE, FAIL_CODE, Reason, Toml, Verifier, verdicts
from tailguard.gate.worker import Worker, check_seconds
from tailguard.words import string_offsets


def _parse_json(texts: pa.ChunkedArray | pa.Array) -> list[tuple[Any, str | None]]:
    """Each text as JSON: (value, None) or (None, why it is not JSON)."""
    out = []
    for text in texts.to_pylist():
        try:
            out.append((json.loads(text), None))
        except (json.JSONDecodeError, TypeError) as exc:
            where = f" (line {exc.lineno}, col {exc.colno})" if hasattr(exc, "lineno") else ""
            out.append((None, f"not JSON: {getattr(exc, 'msg', exc)}{where}"))
    return out


class Schema(Verifier):
    """Validate JSON content against a JSON Schema (``jsonschema``, its declared draft).

    ``schema`` is the schema itself (a dict) or the path of a ``.json`` file; a
    malformed file or an invalid schema is refused at construction with its
    location, before anything runs.
    """

    kind = "schema"
    version = "1"
    codes = ("not_json", "schema")
    toml = {"schema": Toml(str | dict[str, Any])}

    def __init__(self, *, schema: Mapping[str, Any] | str | Path) -> None:
        import jsonschema

        if isinstance(schema, str | Path):
            path = Path(schema)
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
            except FileNotFoundError as exc:
                raise InputError("schema file not found", file=str(path)) from exc
            except json.JSONDecodeError as exc:
                raise InputError(
                    f"not JSON: {exc.msg} (col {exc.colno})", file=str(path), line=exc.lineno
                ) from exc
            self.schema: Any = str(path)
            where = str(path)
        else:
            loaded, self.schema, where = dict(schema), dict(schema), None
        cls = jsonschema.validators.validator_for(loaded)
        try:
            cls.check_schema(loaded)
        except jsonschema.SchemaError as exc:
            path_txt = "/".join(str(p) for p in exc.absolute_path) or "(root)"
            raise InputError(
                f"invalid JSON Schema at {path_txt}: {exc.message}", file=where, field="schema"
            ) from exc
        self._validator = cls(loaded)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_validator"] = (type(self._validator), self._validator.schema)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        cls, schema = state.pop("_validator")
        self.__dict__.update(state)
        self._validator = cls(schema)

    def verify(self, batch: pa.Table) -> pa.Table:
        passed, codes, details = [], [], []
        for value, err in _parse_json(batch.column("content")):
            code = None if err is None else "not_json"
            if err is None:
                error = next(
                    iter(sorted(self._validator.iter_errors(value), key=lambda e: list(e.path))),
                    None,
                )
                if error is not None:
                    at = "/".join(str(p) for p in error.absolute_path) or "(root)"
                    code, err = "schema", f"{error.message} at {at}"
            passed.append(err is None)
            codes.append(code)
            details.append(err)
        return verdicts(passed, codes, details)


@dataclass(frozen=True)
class Rule:
    """One named policy rule: a regular expression (RE2 syntax) or keywords.

    ``forbid`` fails a record that matches; ``require`` fails one that does not.
    Keywords match as whole words. ``ignore_case`` defaults to true.
    """

    name: str
    reason: str
    forbid: str | None = None
    require: str | None = None
    ignore_case: bool = True

    @classmethod
    def keywords(
        cls,
        name: str,
        words: Sequence[str],
        *,
        reason: str,
        required: bool = False,
        ignore_case: bool = True,
    ) -> Rule:
        pattern = r"\b(?:" + "|".join(re.escape(w) for w in words) + r")\b"
        return cls(
            name=name,
            reason=reason,
            ignore_case=ignore_case,
            **({"require": pattern} if required else {"forbid": pattern}),
        )

    def pattern(self) -> str:
        body = self.forbid if self.forbid is not None else self.require
        return ("(?i)" if self.ignore_case else "") + str(body)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


_RULE_KEYS = {
    "name",
    "reason",
    "forbid",
    "require",
    "forbid_keywords",
    "require_keywords",
    "ignore_case",
}


def _line_of(text: str, needle: str, start: int = 0) -> int | None:
    idx = text.find(needle, start)
    return None if idx < 0 else text.count("\n", 0, idx) + 1


def load_rules(path: str | Path) -> list[Rule]:
    """Read rules from TOML (``[[rule]]`` tables); refuse a bad file with its line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputError("rules file not found", file=str(path)) from exc
    from tailguard.settings import parse_toml

    data = parse_toml(text, file=str(path))
    return rules_from_dicts(data.get("rule", []), file=str(path), text=text)


def rules_from_dicts(entries: Any, *, file: str | None = None, text: str = "") -> list[Rule]:
    """Rules from a list of dicts (``[[rule]]`` entries), each checked before anything runs."""
    if not isinstance(entries, list) or not entries:
        raise InputError("no rules: expected one or more [[rule]] tables", file=file, field="rule")
    rules, seen = [], set()
    for i, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, dict) else None
        line = _line_of(text, f'"{name}"') if name else None

        def bad(reason: str, line: int | None = line, i: int = i) -> InputError:
            return InputError(f"rule #{i + 1}: {reason}", file=file, line=line, field="rule")

        if not isinstance(entry, dict) or not name:
            raise bad("needs a `name`")
        unknown = set(entry) - _RULE_KEYS
        if unknown:
            raise bad(f"unknown key(s) {sorted(unknown)}; allowed: {sorted(_RULE_KEYS)}")
        if name in seen:
            raise bad(f"two rules are named {name!r}")
        seen.add(name)
        given = [
            k for k in ("forbid", "require", "forbid_keywords", "require_keywords") if k in entry
        ]
        if len(given) != 1:
            raise bad("give exactly one of forbid, require, forbid_keywords, require_keywords")
        reason = entry.get("reason") or f"rule {name}"
        ignore_case = bool(entry.get("ignore_case", True))
        key = given[0]
        if key.endswith("keywords"):
            words = entry[key]
            if (
                not isinstance(words, list)
                or not words
                or not all(isinstance(w, str) and w for w in words)
            ):
                raise bad(f"`{key}` must be a non-empty list of words")
            rule = Rule.keywords(
                name,
                words,
                reason=reason,
                required=key.startswith("require"),
                ignore_case=ignore_case,
            )
        else:
            rule = Rule(name=name, reason=reason, ignore_case=ignore_case, **{key: entry[key]})
        try:  # compile with the engine that will run it (RE2)
            pc.match_substring_regex(pa.array([""]), rule.pattern())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise bad(f"bad regular expression {entry[key]!r}: {exc}") from exc
        rules.append(rule)
    return rules


class Rules(Verifier):
    """A policy checker: named rules, each a forbidden or required pattern with its reason.

    ``rules`` is a list of :class:`Rule` (or dicts with the TOML keys), or the
    path of a TOML file of ``[[rule]]`` tables. Matching is vectorised (Arrow,
    RE2 syntax); a record fails on the first rule it breaks, in order.
    """

    kind = "rules"
    version = "1"
    codes = ("rule:<name>",)  # one code per rule: ``rule:`` and the rule's name
    toml = {"rules": Toml(str | list[dict[str, Any]])}

    def __init__(self, *, rules: Sequence[Rule | Mapping[str, Any]] | str | Path) -> None:
        if isinstance(rules, str | Path):
            self._rules = load_rules(rules)
            self.rules: Any = str(rules)
        else:
            dicts = [r.to_dict() if isinstance(r, Rule) else dict(r) for r in rules]
            self._rules = rules_from_dicts(dicts)
            self.rules = [r.to_dict() for r in self._rules]

    def verify(self, batch: pa.Table) -> pa.Table:
        text = batch.column("content")
        n = batch.num_rows
        code = pa.nulls(n, pa.string())
        detail = pa.nulls(n, pa.string())
        for rule in reversed(self._rules):  # so the first broken rule wins
            hit = pc.match_substring_regex(text, rule.pattern())
            broken = hit if rule.forbid is not None else pc.invert(hit)
            code = pc.if_else(broken, f"rule:{rule.name}", code)
            detail = pc.if_else(broken, rule.reason, detail)
        return verdicts(pc.is_null(code).to_numpy(zero_copy_only=False), code, detail)


def _non_letters(texts: pa.Array) -> np.ndarray:
    """Characters per text that are neither letters nor whitespace (RE2's ``\\s``:
    tab, newline, form feed, carriage return, space); ASCII counted on the bytes."""
    if not pc.all(pc.string_is_ascii(texts)).as_py():
        return pc.count_substring_regex(texts, r"[^\p{L}\s]").to_numpy(zero_copy_only=False)
    offsets = string_offsets(texts)
    data = np.frombuffer(texts.buffers()[2], np.uint8, offsets[-1] - offsets[0], offsets[0])
    other = (data | np.uint8(0x20)) - np.uint8(ord("a")) >= np.uint8(26)  # not a letter
    other &= (data - np.uint8(9)) >= np.uint8(5)  # nor 9-13, except 11 (vertical tab)
    other |= data == np.uint8(11)
    other &= data != np.uint8(32)
    before = np.zeros(len(data) + 1, np.int64)
    np.cumsum(other, out=before[1:])
    return np.diff(before[offsets - offsets[0]])


class Quality(Verifier):
    """Cheap text-quality bounds: length, repeated word n-grams, non-letter share.

    ``max_repeated_ngrams`` bounds the share of a text's word ``ngram``-grams that
    repeat an earlier one in the same text (degenerate loops score high);
    ``max_non_letters`` bounds the share of characters that are neither letters
    nor whitespace. All computed column-wise.
    """

    kind = "quality"
    #: 2: words (``min_words``, the n-grams) are runs of letters and digits
    #: (``tailguard.words``), no longer whitespace tokens ("it's" is 2 words)
    version = "2"
    codes = ("non_letter_share", "repeated_ngrams", "too_few_words", "too_long", "too_short")

    def __init__(
        self,
        *,
        min_chars: Annotated[int, Field(ge=0)] = 1,
        max_chars: Annotated[int, Field(ge=1)] = 100_000,
        min_words: Annotated[int, Field(ge=0)] = 1,
        ngram: Annotated[int, Field(ge=1, le=64)] = 3,
        max_repeated_ngrams: float = 0.3,
        max_non_letters: float = 0.5,
    ) -> None:
        if min_chars > max_chars:
            raise InputError(f"min_chars {min_chars} > max_chars {max_chars}", field="min_chars")
        for name, v in (
            ("max_repeated_ngrams", max_repeated_ngrams),
            ("max_non_letters", max_non_letters),
        ):
            if not 0.0 <= v <= 1.0:
                raise InputError(f"{name} must be in [0, 1], got {v}", field=name)
        self.min_chars, self.max_chars, self.min_words = min_chars, max_chars, min_words
        self.ngram, self.max_repeated_ngrams = ngram, max_repeated_ngrams
        self.max_non_letters = max_non_letters

    def measures(self, texts: pa.ChunkedArray | pa.Array) -> dict[str, np.ndarray]:
        """The per-text numbers the verdict is based on."""
        chars = pc.utf8_length(texts).to_numpy(zero_copy_only=False).astype(np.int64)
        other = np.concatenate(minhash.by_text_chunks(texts, _non_letters) or [np.zeros(0)])
        non_letters = np.where(chars > 0, other / np.maximum(chars, 1), 0.0)
        word_hashes, word_offsets = minhash.words(texts)  # tokenised once for both
        grams, offsets = minhash.shingles_of_words(word_hashes, word_offsets, self.ngram)
        counts = np.diff(offsets)
        words = np.diff(word_offsets)
        doc = np.repeat(np.arange(len(counts), dtype=np.uint64), counts)
        key = np.sort(doc << np.uint64(32) | grams.astype(np.uint64))
        new = np.ones(len(key), bool)
        new[1:] = key[1:] != key[:-1]
        distinct = np.bincount((key[new] >> np.uint64(32)).astype(np.int64), minlength=len(counts))
        repeated = np.where(counts > 0, 1.0 - distinct / np.maximum(counts, 1), 0.0)
        return {
            "chars": chars,
            "words": words,
            "repeated_ngrams": repeated,
            "non_letters": non_letters,
        }

    def verify(self, batch: pa.Table) -> pa.Table:
        m = self.measures(batch.column("content"))
        n = batch.num_rows
        code = np.full(n, None, dtype=object)
        detail = np.full(n, None, dtype=object)
        checks = [
            (
                "non_letter_share",
                m["non_letters"] > self.max_non_letters,
                lambda i: f"{m['non_letters'][i]:.2f} > {self.max_non_letters}",
            ),
            (
                "repeated_ngrams",
                m["repeated_ngrams"] > self.max_repeated_ngrams,
                lambda i: (
                    f"{self.ngram}-grams {m['repeated_ngrams'][i]:.2f} > {self.max_repeated_ngrams}"
                ),
            ),
            (
                "too_few_words",
                m["words"] < self.min_words,
                lambda i: f"{m['words'][i]} < {self.min_words} words",
            ),
            (
                "too_long",
                m["chars"] > self.max_chars,
                lambda i: f"{m['chars'][i]} > {self.max_chars} chars",
            ),
            (
                "too_short",
                m["chars"] < self.min_chars,
                lambda i: f"{m['chars'][i]} < {self.min_chars} chars",
            ),
        ]
        for name, mask, why in checks:  # last assignment wins: least to most basic
            hit = np.flatnonzero(mask)
            code[hit] = name
            for i in hit:  # only failing records get a worded detail
                detail[i] = why(i)
        score = 1.0 - np.maximum(m["repeated_ngrams"], m["non_letters"])
        return verdicts(code == None, code.tolist(), detail.tolist(), score=score)  # noqa: E711


class FunctionVerifier(Verifier):
    """Any Python callable as a verifier.

    Row-wise (default): ``fn(text) -> bool | (bool, reason) | (bool, reason, score)``,
    datatrove-style, where ``reason`` is a :class:`~tailguard.gate.Reason` (a code and
    a detail) or a bare string: the detail of the generic code ``rejected``. With
    ``vectorised=True``: ``fn(batch: pa.Table)`` returns a verdict table (``passed``
    and optionally ``code``, ``detail`` -- or ``reason``, read as the detail), or a
    boolean array. ``name`` names it in verdicts; ``params`` (JSON-able)
    are stored with them. A module-level function runs in worker processes; a
    lambda runs in the gate's own process. Either way ``fn`` is called in a killable
    worker process: a record (a batch, vectorised) that takes longer than ``timeout``
    seconds fails with code ``timeout`` and the gate goes on with the next.
    """

    kind = "function"
    version = "1"
    codes = (FAIL_CODE, "timeout", "<the function's own codes>")

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        params: Mapping[str, Any] | None = None,
        vectorised: bool = False,
        timeout: float = 10.0,
    ) -> None:
        if not callable(fn):
            raise InputError(f"{fn!r} is not callable", field="fn")
        check_seconds(timeout)
        self.fn = fn
        self._name = name or getattr(fn, "__name__", "function")
        self.vectorised = vectorised
        self.timeout = timeout
        self._params = dict(params or {})
        self._worker = Worker(fn if vectorised else _RowCall(fn, self._name))

    def params(self) -> dict[str, Any]:
        fn = f"{getattr(self.fn, '__module__', '?')}.{getattr(self.fn, '__qualname__', self.fn)}"
        return {"fn": fn, "vectorised": self.vectorised, "timeout": self.timeout, **self._params}

    def verify(self, batch: pa.Table) -> pa.Table:
        if self.vectorised:
            outcome = self._worker.call(batch, self.timeout)
            if outcome.kind == "timeout":
                return verdicts(np.zeros(batch.num_rows, bool), "timeout", outcome.value)
            if outcome.kind != "ok":
                raise RuntimeError(outcome.value)  # retried record by record by the gate
            if isinstance(outcome.value, pa.Table):
                return outcome.value
            return verdicts(np.asarray(outcome.value, dtype=bool))
        passed, codes, details, scores = [], [], [], []
        outcomes = self._worker.map(batch.column("content").to_pylist(), self.timeout)
        for outcome in outcomes:
            if outcome.kind == "ok":
                ok, code, detail, score = outcome.value
            else:
                code = "timeout" if outcome.kind == "timeout" else ERROR_CODE
                ok, detail, score = False, str(outcome.value), None
            passed.append(ok)
            codes.append(code)
            details.append(detail)
            scores.append(score)
        return verdicts(passed, codes, details, score=scores)


class _RowCall:
    """``fn(text)`` and the reading of its answer, together in the worker process."""

    def __init__(self, fn: Callable[[str], Any], name: str) -> None:
        self.fn, self.name = fn, name

    def __call__(self, text: str) -> tuple[bool, str | None, str | None, float | None]:
        out = self.fn(text)
        if isinstance(out, tuple) and not isinstance(out, Reason):
            ok = bool(out[0])
            why = out[1] if len(out) > 1 else None
            score = float(out[2]) if len(out) > 2 and out[2] is not None else None
        else:
            ok, why, score = bool(out), None, None
        if isinstance(why, Reason):
            code, detail = str(why.code), str(why.detail or why.code)
        else:
            code, detail = None, (str(why) if why is not None and why != "" else None)
        if not ok and detail is None:
            detail = f"{self.name} returned False"
        return ok, code, detail, score
