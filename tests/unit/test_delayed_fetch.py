"""A parked fetch (the purgatory) completes when records it can read arrive, and only then."""

from __future__ import annotations

import copy
import datetime
import random

from kio.schema.fetch.v12 import request as fr
from kio.schema.fetch.v12 import response as fs
from kio.schema.produce.v9 import request as pr

from kafkalab.broker.replica_manager import ReplicaManager
from kafkalab.config import broker_config
from kafkalab.controller.controller import Controller
from kafkalab.metadata.image import MetadataImage
from kafkalab.records import encode_batch

WAIT = datetime.timedelta(milliseconds=500)


def _leader_of_two_partitions(tmp_path, replicas: list[int]) -> ReplicaManager:
    cfg = broker_config("lab")
    image = MetadataImage()
    ctl = Controller(image, lambda records: [image.apply(r, image.offset) for r in records], cfg,
                     rng=random.Random(1))
    for b in replicas:
        ctl.heartbeat(b, ctl.register_broker(b, "tcp://x", "h", b, 0), image.offset, False, 0)
    ctl.create_topic("a", 2, len(replicas), {}, assignments={0: replicas, 1: replicas})
    rm = ReplicaManager(1, str(tmp_path), cfg)
    rm.apply_metadata(copy.deepcopy(image), 0)
    return rm


def _produce(rm: ReplicaManager, partition: int, now: int) -> None:
    rm.produce(pr.ProduceRequest(acks=1, timeout=WAIT, topic_data=(pr.TopicProduceData(name="a", partition_data=(
        pr.PartitionProduceData(index=partition, records=encode_batch([(None, b"v", [], now)])),)),)),
        now, lambda r: None)


def _fetch(partition: int, replica_id: int = -1) -> fr.FetchRequest:
    return fr.FetchRequest(replica_id=replica_id, max_wait=WAIT, min_bytes=1, forgotten_topics_data=(), topics=(
        fr.FetchTopic(topic="a", partitions=(fr.FetchPartition(partition=partition, fetch_offset=0,
                                                               partition_max_bytes=1 << 20),)),))


def test_a_parked_consumer_fetch_waits_out_other_partitions_records_and_completes_on_its_own(tmp_path) -> None:
    rm = _leader_of_two_partitions(tmp_path, [1])
    out: list[fs.FetchResponse] = []
    rm.fetch(_fetch(0), 0, out.append)
    _produce(rm, 1, 10)
    assert out == []  # partition 1's record is nothing to this fetch
    _produce(rm, 0, 20)
    assert len(out) == 1 and len(out[0].responses[0].partitions[0].records) > 0


def test_a_parked_follower_fetch_completes_on_records_past_the_high_watermark(tmp_path) -> None:
    rm = _leader_of_two_partitions(tmp_path, [1, 2])
    out: list[fs.FetchResponse] = []
    rm.fetch(_fetch(0, replica_id=2), 0, out.append)
    assert out == []
    _produce(rm, 0, 10)  # acks=1: the HW waits for the follower, the follower reads up to the LEO
    assert rm.partitions[("a", 0)].high_watermark == 0
    assert len(out) == 1 and len(out[0].responses[0].partitions[0].records) > 0


def test_a_parked_fetch_answers_empty_at_its_deadline(tmp_path) -> None:
    rm = _leader_of_two_partitions(tmp_path, [1])
    out: list[fs.FetchResponse] = []
    rm.fetch(_fetch(0), 0, out.append)
    rm.try_complete(499)
    assert out == []
    rm.try_complete(500)
    assert len(out) == 1 and out[0].responses[0].partitions[0].records == b""


def test_an_idle_follower_fetch_ends_on_the_shared_grid_and_a_consumer_fetch_waits_its_own_time(tmp_path) -> None:
    """A cluster-internal long poll ends at the last multiple of half its max wait before the
    max wait is up (so the idle cluster's polls end together, with the timers' wake-ups); a
    client's fetch waits exactly its max wait."""
    rm = _leader_of_two_partitions(tmp_path, [1, 2])
    follower: list[fs.FetchResponse] = []
    consumer: list[fs.FetchResponse] = []
    rm.fetch(_fetch(0, replica_id=2), 1_130, follower.append)  # parked at 1,130: ends at 1,500
    rm.fetch(_fetch(1), 1_130, consumer.append)  # ends at 1,630
    assert rm.next_deadline_ms() == 1_500
    rm.try_complete(1_499)
    assert follower == []
    rm.try_complete(1_500)
    assert len(follower) == 1 and consumer == [] and rm.next_deadline_ms() == 1_630
    rm.try_complete(1_630)
    assert len(consumer) == 1
