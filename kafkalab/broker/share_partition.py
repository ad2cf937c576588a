"""SharePartition: one partition as a queue for a share group (KIP-932), as a plain class (pure).

The partition's leader keeps, per share group, a window of *in-flight* records between the
share-partition start offset (SPSO: everything below is done with) and end offset (SPEO: the
next record never handed out). Each in-flight record is

    available     -> a consumer may acquire it
    acquired      -> one consumer holds it, under a lock that expires (lock duration)
    acknowledged  -> ACCEPTed: done
    archived      -> REJECTed, or delivered `delivery_limit` times: done, never redelivered

A RELEASE or an expired lock makes the record available again (archived once it has been
delivered `delivery_limit` times). The SPSO moves past records that are done; at most
`max_in_flight` records sit between SPSO and SPEO. Time comes in as `now_ms`.

`state()` is what is persisted (the share-group state topic): SPSO plus every in-flight record
that is not plain available, with its delivery count; acquired records persist as available,
so after a restart they are delivered again, while acknowledged ones never are.
"""

from __future__ import annotations

from dataclasses import dataclass

from kio.schema.errors import ErrorCode

AVAILABLE, ACQUIRED, ACKNOWLEDGED, ARCHIVED = 0, 1, 2, 4  # Kafka's RecordState codes
STATE_NAMES = {AVAILABLE: "available", ACQUIRED: "acquired", ACKNOWLEDGED: "acknowledged", ARCHIVED: "archived"}
GAP, ACCEPT, RELEASE, REJECT = 0, 1, 2, 3  # acknowledge types


@dataclass
class InFlight:
    state: int = AVAILABLE
    delivery_count: int = 0
    member: str | None = None
    lock_deadline_ms: int = 0


class SharePartition:
    def __init__(self, start_offset: int, *, lock_duration_ms: int, delivery_limit: int, max_in_flight: int,
                 state: tuple[int, list[tuple[int, int, int, int]]] | None = None):
        self.lock_duration_ms = lock_duration_ms
        self.delivery_limit = delivery_limit
        self.max_in_flight = max_in_flight
        self.spso = self.speo = start_offset
        self.records: dict[int, InFlight] = {}
        # Counters for the views, since this leader loaded the share-partition.
        self.redelivered = self.expired = self.acknowledged_total = self.archived_total = 0
        self.accepted_by: dict[str, int] = {}  # member -> records it ACCEPTed
        if state is not None:
            self.spso, batches = state
            self.speo = self.spso
            for first, last, st, count in batches:
                for o in range(max(first, self.spso), last + 1):
                    # an acquisition does not survive the leader: the record is available again
                    self.records[o] = InFlight(AVAILABLE if st == ACQUIRED else st, count)
                    self.speo = max(self.speo, o + 1)
            for o in range(self.spso, self.speo):
                self.records.setdefault(o, InFlight())
            self._advance()

    # -- acquiring -------------------------------------------------------------------------------
    def candidates(self, high_watermark: int) -> int | None:
        """The first offset an acquire could hand out (None: nothing to give)."""
        for o in range(self.spso, self.speo):
            if self.records[o].state == AVAILABLE:
                return o
        if self.speo < high_watermark and self.speo - self.spso < self.max_in_flight:
            return self.speo
        return None

    def acquire(self, member: str, high_watermark: int, max_records: int, now_ms: int,
                covered_end: int | None = None) -> list[tuple[int, int, int]]:
        """Acquire up to max_records for member: available in-flight records first, then new
        ones below the high watermark (and covered_end: the records the caller could read).
        Returns (first, last, delivery_count) ranges."""
        end = high_watermark if covered_end is None else min(high_watermark, covered_end)
        got: list[int] = []
        for o in range(self.spso, min(self.speo, end)):
            if len(got) >= max_records:
                break
            if self.records[o].state == AVAILABLE:
                got.append(o)
        while len(got) < max_records and self.speo < end and self.speo - self.spso < self.max_in_flight:
            self.records[self.speo] = InFlight()
            got.append(self.speo)
            self.speo += 1
        ranges: list[tuple[int, int, int]] = []
        for o in got:
            r = self.records[o]
            if r.delivery_count > 0:
                self.redelivered += 1
            r.state, r.member, r.lock_deadline_ms = ACQUIRED, member, now_ms + self.lock_duration_ms
            r.delivery_count += 1
            if ranges and ranges[-1][1] == o - 1 and ranges[-1][2] == r.delivery_count:
                ranges[-1] = (ranges[-1][0], o, r.delivery_count)
            else:
                ranges.append((o, o, r.delivery_count))
        return ranges

    # -- acknowledging ---------------------------------------------------------------------------
    def acknowledge(self, member: str, first: int, last: int, types: list[int]) -> ErrorCode:
        """One acknowledgement batch: a single type for the whole range, or one per offset.
        Every offset must be acquired by this member, else nothing changes and the answer is
        INVALID_RECORD_STATE (the lock expired, or another consumer holds the record now)."""
        if last < first or not types or (len(types) != 1 and len(types) != last - first + 1):
            return ErrorCode.invalid_request
        if any(t not in (GAP, ACCEPT, RELEASE, REJECT) for t in types):
            return ErrorCode.invalid_request
        for o in range(first, last + 1):
            r = self.records.get(o)
            t = types[0] if len(types) == 1 else types[o - first]
            if r is None and t == GAP:
                continue
            if r is None or r.state != ACQUIRED or r.member != member:
                return ErrorCode.invalid_record_state
        for o in range(first, last + 1):
            r = self.records.get(o)
            if r is None:
                continue
            t = types[0] if len(types) == 1 else types[o - first]
            if t == ACCEPT:
                self._set(r, ACKNOWLEDGED)
                self.accepted_by[member] = self.accepted_by.get(member, 0) + 1
            elif t in (REJECT, GAP):
                self._set(r, ARCHIVED)
            else:
                self._release(r)
        self._advance()
        return ErrorCode.none

    def _set(self, r: InFlight, state: int) -> None:
        self.acknowledged_total += state == ACKNOWLEDGED
        self.archived_total += state == ARCHIVED
        r.state, r.member, r.lock_deadline_ms = state, None, 0

    def _release(self, r: InFlight) -> None:
        self._set(r, ARCHIVED if r.delivery_count >= self.delivery_limit else AVAILABLE)

    def _advance(self) -> None:
        while self.spso < self.speo and self.records[self.spso].state in (ACKNOWLEDGED, ARCHIVED):
            del self.records[self.spso]
            self.spso += 1

    # -- locks and members -----------------------------------------------------------------------
    def expire_locks(self, now_ms: int) -> int:
        """Acquired records whose lock has run out go back (or are archived at the limit)."""
        n = 0
        for r in self.records.values():
            if r.state == ACQUIRED and now_ms >= r.lock_deadline_ms:
                self._release(r)
                n += 1
        self.expired += n
        self._advance()
        return n

    def release_member(self, member: str) -> int:
        """A consumer left (or closed its share session): what it holds is available again."""
        held = [r for r in self.records.values() if r.state == ACQUIRED and r.member == member]
        for r in held:
            self._set(r, AVAILABLE if r.delivery_count < self.delivery_limit else ARCHIVED)
        self._advance()
        return len(held)

    def next_lock_deadline(self) -> int | None:
        deadlines = [r.lock_deadline_ms for r in self.records.values() if r.state == ACQUIRED]
        return min(deadlines) if deadlines else None

    # -- views and persistence -------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        out = {name: 0 for name in STATE_NAMES.values()}
        for r in self.records.values():
            out[STATE_NAMES[r.state]] += 1
        return out

    def acquired_by(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.records.values():
            if r.state == ACQUIRED and r.member is not None:
                out[r.member] = out.get(r.member, 0) + 1
        return out

    def state(self) -> tuple[int, list[tuple[int, int, int, int]]]:
        """(SPSO, [(first, last, state, delivery count)]) of the in-flight records, ranges
        merged; acquired records are written as available (Kafka's rule)."""
        batches: list[tuple[int, int, int, int]] = []
        for o in range(self.spso, self.speo):
            r = self.records[o]
            st = AVAILABLE if r.state == ACQUIRED else r.state
            if batches and batches[-1][1] == o - 1 and batches[-1][2:] == (st, r.delivery_count):
                batches[-1] = (batches[-1][0], o, st, r.delivery_count)
            else:
                batches.append((o, o, st, r.delivery_count))
        return self.spso, batches
