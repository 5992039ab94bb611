"""When the pump seals a batch, and how long it may sleep before it looks again.

Pure: the pump reads both clocks and the ring, and hands what it saw to a
:class:`BatchTimer` as a :class:`Look`; the timer answers. Nothing here
reads a clock, so every rule is tested from tables of looks
(``tests/test_timing.py``).

The rules:

- A batch is due when it is ``flush_interval`` old, counted from when its
  first event was logged (the record's ``created`` time), not from when the
  pump took it: an event logged while the pump slept must not wait twice.
  That age is clamped to ``flush_interval`` (a record made long before it
  was logged is due at once, not earlier) and is never less than the time
  since the pump first saw the event waiting (a record dated in the future,
  after the wall clock stepped back, or with no usable time, still ages).
- A stream fast enough to fill batches (the last batch was sealed full) that
  falls silent for a quiet period (a tenth of ``flush_interval``, at least
  10 ms) has its partial batch sealed then: its last events need not sit a
  second in memory, exposed to a crash. Silence is the ring's count of
  events not moving between two looks. Slow streams wait for the age.
- While nothing waits the pump still looks once per ``flush_interval``
  (for the spill and acknowledgements); while a fast stream runs, once per
  quiet period.
- When a batch is due but the sender has no room, only the sender (taking a
  batch wakes the pump) or new events can help: waiting on the age would spin.

Ages are compared as they are, never rebuilt as instants: in floating point
``now - (now - interval)`` is not ``interval`` for every ``now``, and a pump
that looked again and again with a timeout of 0 would never send.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The quiet period, as a share of ``flush_interval``.
QUIET_SHARE = 0.1
#: Looks more often than this would cost more than they save.
MIN_QUIET = 0.01


@dataclass(frozen=True)
class Look:
    """What the pump saw at one moment."""

    now: float  #: the monotonic clock
    wall: float  #: the wall clock (``time.time()``), the clock of ``created`` times
    emitted: int  #: events logged so far (the ring's count)
    #: ``created`` of the oldest event waiting in the ring (None when it is
    #: empty, or when the time is unusable and only "first seen" counts).
    head_created: float | None = None
    head_waiting: bool = False  #: whether the ring holds any event at all


class BatchTimer:
    """The batch-timing state of one pump; see the module docstring."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.quiet = max(QUIET_SHARE * interval, MIN_QUIET)
        #: When the open batch's first event was logged, on the monotonic
        #: clock; None while no batch is open.
        self.opened_at: float | None = None
        #: The last batch sealed was full: the stream fills batches.
        self.fast = False
        #: A batch is due but the sender has no room.
        self.sender_full = False
        self._seen_emitted = -1  # the count at the last look that saw it move
        self._seen_at = 0.0
        self._head_seen: float | None = None  # when a look first found the ring's head waiting
        self._cycled_at = 0.0

    # -- what happened -------------------------------------------------------

    def opened(self, look: Look, created: float | None) -> None:
        """The open batch took its first events; the first was logged at ``created``."""
        self.opened_at = look.now - self._age_of(look, created)
        self._head_seen = None

    def took(self) -> None:
        """More events left the ring: its head is a new one."""
        self._head_seen = None

    def sealed(self, full: bool) -> None:
        """The open batch was sealed; ``full`` when a size limit sealed it."""
        self.opened_at = None
        self.fast = full

    def cycled(self, now: float) -> None:
        """The pump worked through a cycle at ``now``."""
        self._cycled_at = now

    # -- questions -------------------------------------------------------------

    def age(self, look: Look) -> float | None:
        """How long the oldest event not yet sent has waited; None when none waits."""
        if self.opened_at is not None:
            return look.now - self.opened_at
        if not look.head_waiting:
            self._head_seen = None
            return None
        if self._head_seen is None:
            self._head_seen = look.now
        return self._age_of(look, look.head_created)

    def due(self, look: Look, *, full: bool = False, wanted: bool = False) -> bool:
        """Whether the open batch should be sealed now.

        ``full``: it reached a size limit; ``wanted``: a flush or close waits on it.
        """
        if self.opened_at is None:
            return False
        return full or wanted or self._aged(look.now - self.opened_at, look)

    def wait(self, look: Look) -> float:
        """How long the pump may sleep before looking again (it is woken earlier by new events)."""
        if self.sender_full:
            return self.interval
        age = self.age(look)
        left = self.interval if age is None else max(0.0, self.interval - age)
        return min(left, self.quiet) if self.fast else left

    def cycle_due(self, look: Look) -> bool:
        """After a wait that nothing cut short: whether a cycle has work to do.

        Work: a batch that aged, a fast stream that stopped, or, now and then
        while nothing waits, the spill and the acknowledgements.
        """
        if self.sender_full:
            return True
        age = self.age(look)
        if age is not None:
            return self._aged(age, look)
        if not self.fast:
            return True
        if self._stopped(look):
            self.fast = False  # it stopped on a batch boundary: nothing left to watch
        return look.now - self._cycled_at >= self.interval

    # -- rules ---------------------------------------------------------------------

    def _age_of(self, look: Look, created: float | None) -> float:
        """An event's age: from ``created``, within the interval, at least since first seen."""
        age = 0.0 if created is None else min(max(look.wall - created, 0.0), self.interval)
        seen = self._head_seen
        return age if seen is None else max(age, look.now - seen)

    def _aged(self, age: float, look: Look) -> bool:
        return age >= self.interval or self._stopped(look)

    def _stopped(self, look: Look) -> bool:
        """True once a fast stream has logged nothing for a quiet period; notes this look."""
        if not self.fast:
            return False
        if look.emitted != self._seen_emitted:
            self._seen_emitted, self._seen_at = look.emitted, look.now
            return False
        return look.now - self._seen_at >= self.quiet
