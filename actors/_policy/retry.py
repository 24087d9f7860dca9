"""Retry policies: how long to wait before the next attempt.

A policy is plain data (it travels inside every `Job` message), so the actor that
decides a retry needs nothing but the message in front of it.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

from actors._errors import InvalidArgument

__all__ = ["NO_BACKOFF", "BackoffKind", "RetryPolicy"]

BackoffKind = Literal["fixed", "linear", "exponential"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How the delay before a retry grows with each failed attempt.

    Build one with `fixed`, `linear` or `exponential`. The delay after attempt
    *n* (1-based) is ``base`` (fixed), ``base * n`` (linear) or
    ``base * factor ** (n - 1)`` (exponential), never more than ``cap``; with
    ``jitter`` *j* a random extra of up to ``j`` times that delay is added, which
    spreads out retries of many jobs that failed together.
    """

    kind: BackoffKind = "fixed"
    """Which formula the delay follows."""

    base: float = 0.0
    """Seconds: the first delay, and the step of the linear and exponential forms."""

    cap: float = math.inf
    """Seconds: the longest delay before jitter."""

    jitter: float = 0.0
    """A fraction in [0, 1]: the largest random extra, relative to the delay."""

    factor: float = 2.0
    """The growth factor of the exponential form."""

    def __post_init__(self) -> None:
        if self.kind not in ("fixed", "linear", "exponential"):
            msg = f"retry kind must be fixed, linear or exponential, not {self.kind!r}"
            raise InvalidArgument(msg)
        for name in ("base", "cap", "factor"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool):
                msg = f"retry {name} must be a number, not {value!r}"
                raise InvalidArgument(msg)
            if math.isnan(value) or value < 0:
                msg = f"retry {name} must be >= 0, not {value!r}"
                raise InvalidArgument(msg)
        if not 0.0 <= self.jitter <= 1.0:
            msg = f"retry jitter must be within [0, 1], not {self.jitter!r}"
            raise InvalidArgument(msg)
        if self.factor < 1.0:
            msg = f"retry factor must be >= 1, not {self.factor!r}"
            raise InvalidArgument(msg)

    @classmethod
    def fixed(cls, base: float = 1.0, *, jitter: float = 0.0) -> RetryPolicy:
        """Wait the same ``base`` seconds before every retry."""
        return cls("fixed", base, math.inf, jitter)

    @classmethod
    def linear(
        cls, base: float = 1.0, *, cap: float = math.inf, jitter: float = 0.0
    ) -> RetryPolicy:
        """Wait ``base * n`` seconds after the *n*-th failed attempt, at most ``cap``."""
        return cls("linear", base, cap, jitter)

    @classmethod
    def exponential(
        cls,
        base: float = 1.0,
        *,
        cap: float = 300.0,
        jitter: float = 0.0,
        factor: float = 2.0,
    ) -> RetryPolicy:
        """Wait ``base * factor ** (n - 1)`` seconds after the *n*-th failed attempt.

        The delay stops growing at ``cap``.
        """
        return cls("exponential", base, cap, jitter, factor)

    def _exponential(self, n: int) -> float:
        # Past the cap the exact value does not matter, and it may not fit a float.
        try:
            return float(self.base * self.factor ** (n - 1))
        except OverflowError:
            return math.inf

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        n = max(1, attempt)
        if self.kind == "fixed":
            raw = self.base
        elif self.kind == "linear":
            raw = self.base * n
        else:
            raw = self._exponential(n)
        delay = float(min(raw, self.cap))
        if self.jitter and delay:
            delay += delay * self.jitter * (rng or random).random()
        return delay


NO_BACKOFF = RetryPolicy()
"""Retry at once: the policy used when neither handler nor submit names one."""
