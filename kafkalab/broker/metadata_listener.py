"""The broker's metadata listener (Kafka's BrokerMetadataListener / MetadataLoader).

A Fetch of `__cluster_metadata` partition 0 from the image's offset, long-polled at the
controller (metadata.fetch.max.wait.ms) and sent again as soon as it is answered. Batches that
arrive are replayed into the broker's MetadataImage and handed to the ReplicaManager
(`apply_metadata`), which hosts, leads or follows replicas as the image says; `on_applied`
then lets the rest of the broker react (fetchers, waiting InitProducerId, metrics). A quorum
controller that is not active answers NOT_CONTROLLER naming the one that leads.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

from kio.schema.errors import ErrorCode

from kafkalab.broker.controller_channel import ControllerChannelManager
from kafkalab.broker.replica_manager import TP, ReplicaManager
from kafkalab.clock import Clock
from kafkalab.metadata.image import MetadataImage
from kafkalab.metadata.replay import apply_batches
from kafkalab.metadata.topic import METADATA_TOPIC
from kafkalab.protocol.apis import lazy_schema

fetch_req = lazy_schema("kio.schema.fetch.v12.request")

RETRY_ELECTION_S = 0.05  # no controller is active yet: ask again shortly


class BrokerMetadataListener:
    def __init__(self, *, broker_id: int, controller: ControllerChannelManager, image: MetadataImage,
                 rm: ReplicaManager, clock: Clock, max_wait_ms: int,
                 call_later: Callable[[float, Callable[[], Any]], Any]):
        self.broker_id = broker_id
        self.controller = controller
        self.image = image
        self.rm = rm
        self.clock = clock
        self.max_wait_ms = max_wait_ms
        self.call_later = call_later
        self.active = False  # fetching: from registration on
        self._in_flight: object | None = None  # the token of the fetch waiting for its answer
        self.on_applied: Callable[[dict[TP, str]], None] = lambda changes: None

    def start(self) -> None:
        self.active = True
        self.ensure_fetching()

    def ensure_fetching(self) -> None:
        """Send a fetch unless one is waiting for its answer."""
        if self.active and self._in_flight is None:
            self._fetch()

    def refetch(self) -> None:
        """Give up on the fetch in flight (lost on a cut link, or sent to a controller this
        broker has left) and send a new one."""
        self._in_flight = None
        self.ensure_fetching()

    def _fetch(self) -> None:
        req = fetch_req.FetchRequest(
            replica_id=self.broker_id, max_wait=datetime.timedelta(milliseconds=self.max_wait_ms),
            min_bytes=1, topics=(fetch_req.FetchTopic(topic=METADATA_TOPIC, partitions=(
                fetch_req.FetchPartition(partition=0, fetch_offset=self.image.offset,
                                         partition_max_bytes=1 << 20),)),),
            forgotten_topics_data=())
        token = self._in_flight = object()

        def failed(_error: Any) -> None:
            if self._in_flight is token:
                self._in_flight = None  # the next heartbeat fetches again

        self.controller.send(req, lambda resp: self._on_metadata(token, resp), failed)

    def _on_metadata(self, token: object, resp: Any) -> None:
        if self._in_flight is not token:
            return  # superseded by refetch()
        self._in_flight = None
        part = resp.responses[0].partitions[0]
        if part.error_code == ErrorCode.not_controller:
            # A quorum controller that is not active says who leads (-1: an election is on).
            hint = int(part.current_leader.leader_id)
            if hint >= 0 and hint != self.controller.active_id:
                self.controller.follow(hint)
                self.ensure_fetching()
            else:
                self.call_later(RETRY_ELECTION_S, lambda: self._retry(rotate=hint < 0))
            return
        data = part.records or b""
        if data:
            apply_batches(bytes(data), self.image, self.image.offset)
            self.on_applied(self.rm.apply_metadata(self.image, self.clock.wall_ms()))
        self.ensure_fetching()

    def _retry(self, rotate: bool) -> None:
        if rotate:
            self.controller.follow(None)
        self.ensure_fetching()
