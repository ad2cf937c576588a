"""Last stable offset, aborted-transaction lists and markers on one broker, no processes."""

from __future__ import annotations

import datetime
import random

from kio.schema.errors import ErrorCode
from kio.schema.fetch.v12 import request as fr
from kio.schema.produce.v9 import request as pr
from kio.schema.write_txn_markers.v1 import request as wr
from kio.schema.write_txn_markers.v1 import response as wresp

from kafkalab.broker.replica_manager import ReplicaManager
from kafkalab.config import broker_config
from kafkalab.controller.controller import Controller
from kafkalab.metadata.image import MetadataImage
from kafkalab.records import encode_batch

T = "t"


def setup(tmp_path):
    cfg = broker_config("lab")
    image = MetadataImage()
    c = Controller(image, lambda rs: [image.apply(r, image.offset) for r in rs], cfg, rng=random.Random(0))
    e = c.register_broker(1, "tcp://x", "h", 1, 0)
    c.heartbeat(1, e, image.offset, False, 0)
    c.create_topic(T, 1, 1)
    rm = ReplicaManager(1, str(tmp_path), cfg)
    rm.apply_metadata(image, 0)
    return rm


def produce(rm, values, pid=-1, txn=False, seq=-1):
    batch = encode_batch([(None, v, [], 0) for v in values], producer_id=pid, producer_epoch=0 if pid >= 0 else -1,
                         base_sequence=seq, transactional=txn)
    out = []
    rm.produce(pr.ProduceRequest(acks=1, timeout=datetime.timedelta(seconds=5), topic_data=(
        pr.TopicProduceData(name=T, partition_data=(pr.PartitionProduceData(index=0, records=batch),)),)), 0, out.append)
    return out[0].responses[0].partition_responses[0]


def fetch(rm, isolation):
    out = []
    rm.fetch(fr.FetchRequest(replica_id=-1, max_wait=datetime.timedelta(0), min_bytes=0, isolation_level=isolation,
                             topics=(fr.FetchTopic(topic=T, partitions=(fr.FetchPartition(
                                 partition=0, fetch_offset=0, partition_max_bytes=1 << 20),)),),
                             forgotten_topics_data=()), 0, out.append)
    return out[0].responses[0].partitions[0]


def markers(rm, pid, commit):
    out = []
    rm.write_txn_markers(wr.WriteTxnMarkersRequest(markers=(wr.WritableTxnMarker(
        producer_id=pid, producer_epoch=0, transaction_result=commit, coordinator_epoch=0,
        topics=(wr.WritableTxnMarkerTopic(name=T, partition_indexes=(0,)),)),)),
        wresp.WriteTxnMarkersResponse, 0, out.append)
    return out[0]


def test_open_transaction_holds_the_last_stable_offset(tmp_path):
    rm = setup(tmp_path)
    part = rm.partitions[(T, 0)]
    produce(rm, [b"plain"])
    produce(rm, [b"t1", b"t2"], pid=7, txn=True, seq=0)
    produce(rm, [b"after"])
    assert part.high_watermark == 4 and part.last_stable_offset == 1
    assert int(fetch(rm, 1).last_stable_offset) == 1
    resp = markers(rm, 7, commit=True)
    assert resp.markers[0].topics[0].partitions[0].error_code == ErrorCode.none
    assert part.log_end_offset == 5 and part.last_stable_offset == 5  # the marker took offset 4


def test_aborted_transactions_are_listed_for_read_committed_only(tmp_path):
    rm = setup(tmp_path)
    produce(rm, [b"a1", b"a2"], pid=9, txn=True, seq=0)
    markers(rm, 9, commit=False)
    committed = fetch(rm, 1)
    assert [(int(a.producer_id), int(a.first_offset)) for a in committed.aborted_transactions] == [(9, 0)]
    uncommitted = fetch(rm, 0)
    assert uncommitted.aborted_transactions is None
    assert uncommitted.records == committed.records  # same bytes; the consumer filters


def test_clients_cannot_write_control_batches(tmp_path):
    rm = setup(tmp_path)
    batch = encode_batch([(None, b"x", [], 0)], producer_id=1, producer_epoch=0, transactional=True, control=True)
    out = []
    rm.produce(pr.ProduceRequest(acks=1, timeout=datetime.timedelta(seconds=5), topic_data=(
        pr.TopicProduceData(name=T, partition_data=(pr.PartitionProduceData(index=0, records=batch),)),)), 0, out.append)
    assert out[0].responses[0].partition_responses[0].error_code == ErrorCode.invalid_record


def test_log_append_time_replaces_the_producers_timestamps(tmp_path):
    from kafkalab.records import decode_batch

    cfg = broker_config("lab")
    image = MetadataImage()
    c = Controller(image, lambda rs: [image.apply(r, image.offset) for r in rs], cfg, rng=random.Random(0))
    e = c.register_broker(1, "tcp://x", "h", 1, 0)
    c.heartbeat(1, e, image.offset, False, 0)
    c.create_topic("lat", 1, 1, {"message.timestamp.type": "LogAppendTime"})
    rm = ReplicaManager(1, str(tmp_path), cfg)
    rm.apply_metadata(image, 0)
    batch = encode_batch([(None, b"v", [], 5)])
    out = []
    rm.produce(pr.ProduceRequest(acks=1, timeout=datetime.timedelta(seconds=5), topic_data=(
        pr.TopicProduceData(name="lat", partition_data=(pr.PartitionProduceData(index=0, records=batch),)),)),
        123_456, out.append)
    data = bytes(rm.partitions[("lat", 0)].log.read_bytes(0, 1 << 20))
    b = decode_batch(data)  # CRC verified
    assert b.header.timestamp_type == 1 and b.records[0].timestamp == 123_456
