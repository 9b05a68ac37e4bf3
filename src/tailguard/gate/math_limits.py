"""Refuse math answers whose value is too large to compute, before computing it.

``1e1000000000``, ``9^{9^{9}}``, ``100000000!`` or ``\\binom{10^{12}}{10^{6}}`` are
short texts whose exact value has billions of digits: Python and sympy compute
them in C code that no signal interrupts. The killable worker
(:mod:`tailguard.gate.worker`) is the guarantee that such an answer cannot hang
the gate; this check is the cheap first line that names the problem at once
(code ``too_large``). It reads literals only: powers (towers collapsed from the
top), scientific exponents, factorials and binomials of numbers.
"""

from __future__ import annotations

import math
import re

#: The most decimal digits a value may have for the comparison to compute it.
MAX_DIGITS = 10_000

_NUM = r"-?\d+(?:\.\d+)?"
#: A power of two literals, the exponent bare, in braces or in parentheses.
_POWER = re.compile(
    rf"(?<![\d.])(?=(({_NUM})\s*(?:\^|\*\*)\s*(?:\{{\s*({_NUM})\s*\}}|\(\s*({_NUM})\s*\)|({_NUM}))))"
)
_SCIENTIFIC = re.compile(r"\d\s*[eE]\s*([+-]?\d+)")
_FACTORIAL = re.compile(r"(\d+)\s*[)}]?\s*!")
_BINOMIAL = re.compile(r"\\[dt]?binom\s*\{\s*(\d+)\s*\}\s*\{\s*(\d+)\s*\}")


class TooLarge(ValueError):
    """An answer whose exact value would have more than :data:`MAX_DIGITS` digits."""


def check_size(text: str) -> None:
    """Raise :class:`TooLarge` naming the part of ``text`` whose value is too large."""
    s = str(text)
    for m in _SCIENTIFIC.finditer(s):
        if abs(int(m.group(1))) > MAX_DIGITS:
            raise TooLarge(f"{m.group(0)!r}: exponent {m.group(1)} is beyond {MAX_DIGITS}")
    s = _collapse_powers(s)
    for m in _FACTORIAL.finditer(s):
        n = int(m.group(1))
        if n > 1 and math.lgamma(n + 1) / math.log(10) > MAX_DIGITS:
            raise TooLarge(f"{n}! would have more than {MAX_DIGITS} digits")
    for m in _BINOMIAL.finditer(s):
        n, k = int(m.group(1)), int(m.group(2))
        k = min(k, n - k)
        if k > 0 and k * math.log10(math.e * n / k) > MAX_DIGITS:
            raise TooLarge(f"binomial({n}, {k}) would have more than {MAX_DIGITS} digits")


def _collapse_powers(s: str) -> str:
    """Replace each literal power by its value, innermost (rightmost) first."""
    for _ in range(len(s)):  # each pass removes one operator
        found = list(_POWER.finditer(s))
        if not found:
            return s
        m = found[-1]
        whole, base = m.group(1), float(m.group(2))
        exponent = float(next(g for g in m.groups()[2:] if g is not None))
        digits = abs(exponent) * math.log10(abs(base)) if abs(base) > 1 else 0.0
        if digits > MAX_DIGITS:
            raise TooLarge(f"{whole!r} would have about {digits:.3g} digits, beyond {MAX_DIGITS}")
        # a value past 15 digits only matters as an exponent, where it is far too large anyway
        value = "9" * 16 if digits > 15 else f"{abs(base) ** exponent:.0f}"
        start = m.start(1)
        s = s[:start] + value + s[start + len(whole) :]
    return s
