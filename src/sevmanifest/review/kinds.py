"""The vocabulary of a semantic diff: change kinds and the change records comparators yield."""
from __future__ import annotations

import enum
from dataclasses import dataclass


class Kind(enum.Enum):
    """From most to least severe."""

    WEAKENS = "weakens"  # the owner accepts more launches or trusts the host more
    STRENGTHENS = "strengthens"  # the reverse
    MEASUREMENT = "measurement"  # the reference values change, with no direction
    NEUTRAL = "neutral"  # launch-time settings only

    @property
    def severity(self) -> int:
        return {"weakens": 3, "strengthens": 2, "measurement": 1, "neutral": 0}[self.value]


@dataclass(frozen=True)
class RawChange:
    """A change within one VM; ``path`` is relative to the VM ("policy.debug")."""

    path: str
    old: str | None  # display strings; None: absent on that side
    new: str | None
    kind: Kind
    why: str
    measured: bool = False  # the reference values (launch digest or measurement) change
