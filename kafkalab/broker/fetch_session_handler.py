"""A fetcher's side of fetch sessions (KIP-227): Kafka's FetchSessionHandler, as rules over Fetch v12.

The broker's side is fetch_session.py. Pure: the partitions a fetcher wants now (with their fetch
state) in, the Fetch to send out; the leader's answer in, whether to use it out. One handler per
broker fetched from (a follower has one per leader).

- The first request is *full* (epoch 0, INITIAL_EPOCH): it lists every partition. The leader
  answers a session id (0: it keeps no session for us, and the next request is full again).
- Every later request is *incremental* (the session id, epoch 1, 2, ... wrapping from 2^31-1 to
  1): it lists only the partitions added to the session or whose fetch state changed (fetch
  offset, log start offset, max bytes, current leader epoch, last fetched epoch: any field),
  and forgets those no longer wanted (`forgotten_topics_data`). The leader answers only
  partitions with news: a partition left out of a response means nothing at all.
- The session starts over with a full request when the leader answers FETCH_SESSION_ID_NOT_FOUND
  (session 0), any other top-level error such as INVALID_FETCH_SESSION_EPOCH (the same session
  id at epoch 0, so that the leader closes it and opens a new one), a response that does not
  match the session (a full one leaving a partition out or adding one, an incremental one adding
  one), or no response at all (lost, timed out: the leader may or may not have counted the
  epoch). A response the handler refuses is not applied: its partitions are fetched again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kio.schema.errors import ErrorCode

from kafkalab.broker.fetch_session import FINAL_EPOCH, INITIAL_EPOCH, INVALID_SESSION_ID, next_epoch
from kafkalab.protocol.apis import lazy_schema

fetch_req = lazy_schema("kio.schema.fetch.v12.request")
fetch_resp = lazy_schema("kio.schema.fetch.v12.response")

__all__ = ["FetchRequestData", "FetchSessionHandler"]

TP = tuple[str, int]


@dataclass(frozen=True, slots=True)
class FetchRequestData:
    """What one Fetch carries (Kafka's FetchRequestData): `to_send` in request order, and the
    whole session as the leader will serve it."""

    session_id: int
    epoch: int
    to_send: dict[TP, Any]  # (topic, partition) -> fetch_req.FetchPartition
    to_forget: tuple[TP, ...]
    session_partitions: dict[TP, Any]

    @classmethod
    def sessionless(cls, wanted: Mapping[TP, Any]) -> FetchRequestData:
        """A request outside any session (epoch -1): every partition, every time."""
        return cls(INVALID_SESSION_ID, FINAL_EPOCH, dict(wanted), (), dict(wanted))

    @property
    def full(self) -> bool:
        return _full(self.epoch)

    @property
    def empty(self) -> bool:
        """Nothing to fetch and nothing to forget: no request to send."""
        return not self.session_partitions and not self.to_forget

    def request(self, **fields: Any) -> fetch_req.FetchRequest:
        """The FetchRequest, with `fields` for the rest (replica_id, max_wait, min_bytes, ...)."""
        forgotten: dict[str, list[int]] = {}
        for topic, pid in self.to_forget:
            forgotten.setdefault(topic, []).append(pid)
        return fetch_req.FetchRequest(
            session_id=self.session_id, session_epoch=self.epoch, topics=_topics(self.to_send.items()),
            forgotten_topics_data=tuple(fetch_req.ForgottenTopic(topic=t, partitions=tuple(ps))
                                        for t, ps in forgotten.items()),
            **fields)


@dataclass
class FetchSessionHandler:
    """One fetcher's session with one broker: what the next request says, given what it wants."""

    node: int  # the broker fetched from
    session_id: int = INVALID_SESSION_ID
    epoch: int = INITIAL_EPOCH  # of the next request
    # The partitions as last sent, in the leader's order (Kafka's sessionPartitions).
    session_partitions: dict[TP, Any] = field(default_factory=dict)

    @property
    def full(self) -> bool:
        """Is the next request a full one?"""
        return _full(self.epoch)

    def build(self, wanted: Mapping[TP, Any]) -> FetchRequestData:
        """The next request, for `wanted` ((topic, partition) -> FetchPartition, in the order to
        fetch them). The session takes it as sent: a request not sent after all must be
        followed by `start_over()`."""
        if self.full:
            self.session_partitions = dict(wanted)
            return FetchRequestData(self.session_id, self.epoch, dict(wanted), (), dict(self.session_partitions))
        altered: dict[TP, Any] = {}
        forgotten: list[TP] = []
        for tp, sent in list(self.session_partitions.items()):
            now = wanted.get(tp)
            if now is None:
                del self.session_partitions[tp]
                forgotten.append(tp)
            elif now != sent:  # any field of its fetch state
                self.session_partitions[tp] = now
                altered[tp] = now
        added = {tp: p for tp, p in wanted.items() if tp not in self.session_partitions}
        self.session_partitions.update(added)  # new ones join the end of the session
        return FetchRequestData(self.session_id, self.epoch, {**added, **altered}, tuple(forgotten),
                                dict(self.session_partitions))

    def handle_response(self, response: fetch_resp.FetchResponse) -> bool:
        """Take the leader's answer to the last request built; False: do not apply it (the
        next request is full)."""
        error = response.error_code
        if error != ErrorCode.none:
            if error == ErrorCode.fetch_session_id_not_found:
                self._initial()
            else:  # INVALID_FETCH_SESSION_EPOCH and the rest: close this session, open another
                self.start_over()
            return False
        answered = {(str(t.topic), int(p.partition_index)) for t in response.responses for p in t.partitions}
        session_id = int(response.session_id)
        if self.full:
            if answered != self.session_partitions.keys():
                self._initial()  # a partition left out or one never asked for
                return False
            if session_id == INVALID_SESSION_ID:
                self._initial()  # no session for us: full again next time
            else:
                self.session_id, self.epoch = session_id, next_epoch(INITIAL_EPOCH)
            return True
        if not answered <= self.session_partitions.keys():
            self.start_over()
            return False
        if session_id == INVALID_SESSION_ID:
            self._initial()  # the leader closed the session (everything was forgotten)
        else:
            self.epoch = next_epoch(self.epoch)
        return True

    def start_over(self) -> None:
        """The next request is full, closing this session and asking for a new one (Kafka's
        handleError: a request lost, timed out or never sent)."""
        self.epoch = INITIAL_EPOCH

    def _initial(self) -> None:
        self.session_id, self.epoch = INVALID_SESSION_ID, INITIAL_EPOCH


def _full(epoch: int) -> bool:
    """A request at this epoch lists every partition (it opens a session, or stays outside one)."""
    return epoch in (INITIAL_EPOCH, FINAL_EPOCH)


def _topics(parts: Iterable[tuple[TP, Any]]) -> tuple[fetch_req.FetchTopic, ...]:
    """Partitions in order, a topic entry per run of the same topic."""
    out: list[tuple[str, list[Any]]] = []
    for (topic, _pid), p in parts:
        if not out or out[-1][0] != topic:
            out.append((topic, []))
        out[-1][1].append(p)
    return tuple(fetch_req.FetchTopic(topic=t, partitions=tuple(ps)) for t, ps in out)
