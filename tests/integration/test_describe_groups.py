"""describe_group() on the three kinds of group one small cluster can hold at once: classic,
consumer (KIP-848) and share (KIP-932); and the share-partition metrics the share-group view reads."""

from __future__ import annotations

import socket
import struct
from typing import Any

import pytest
from kio.schema.errors import ErrorCode

from kafkalab.cluster import wait_until
from kafkalab.protocol.api_keys import ApiKey
from kafkalab.protocol.apis import decode_response, request_class
from kafkalab.protocol.kafka_framing import encode_request
from kafkalab.widgets import RebalanceTimeline, ShareGroupView

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def share_group_describe(bootstrap: str, group: str) -> Any:
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    request = request_class(ApiKey.SHARE_GROUP_DESCRIBE, 1)(group_ids=(group,), include_authorized_operations=False)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(encode_request(request, 11))
        (size,) = struct.unpack(">i", sock.recv(4, socket.MSG_WAITALL))
        payload = sock.recv(size, socket.MSG_WAITALL)
    assert struct.unpack_from(">i", payload)[0] == 11 and payload[4] == 0  # header v1: no tagged fields
    return decode_response(ApiKey.SHARE_GROUP_DESCRIBE, 1, payload[5:])


@pytest.fixture
def small_cluster():
    from kafkalab import Cluster

    c = Cluster(brokers=1, config={"share.auto.offset.reset": "earliest"})
    try:
        yield c
    finally:
        c.close()


def test_describe_group_covers_classic_consumer_and_share_groups(small_cluster):
    from kafkalab.client.share_consumer import AcknowledgeType

    cluster = small_cluster
    cluster.create_topic("jobs", partitions=2, replication_factor=1)
    producer = cluster.producer({})
    for n in range(6):
        producer.produce("jobs", value=f"job-{n}".encode(), partition=n % 2)
    producer.flush(10)
    classic = cluster.consumer({"group.id": "old", "auto.offset.reset": "earliest"})
    new = cluster.consumer({"group.id": "new", "group.protocol": "consumer", "auto.offset.reset": "earliest"})
    share = cluster.share_consumer({"group.id": "queue", "share.acknowledgement.mode": "explicit"})
    try:
        for c in (classic, new, share):
            c.subscribe(["jobs"])
        accepted = 0

        def everyone_settled() -> bool:
            nonlocal accepted
            classic.poll(0.05)
            new.poll(0.05)
            msgs = share.poll(0.05)
            for m in msgs:
                share.acknowledge(m, AcknowledgeType.ACCEPT)
            if msgs and all(v is None for v in share.commit_sync(10).values()):
                accepted += len(msgs)
            return len(classic.assignment()) == 2 and len(new.assignment()) == 2 and accepted == 6

        wait_until(everyone_settled, 30, "both consumers to own two partitions and the share consumer to accept 6")

        def described(group: str, kind: str) -> object:
            g = cluster.describe_group(group)
            return (g,) if len(g) and (g["type"] == kind).all() and g["partition"].notna().all() \
                and sorted(g["partition"]) == [0, 1] and g["member"].notna().all() else None

        (old,) = wait_until(lambda: described("old", "classic"), 15, "the classic group described")
        assert set(old["member"]) == {classic.member_id()} and old["member_epoch"].isna().all()
        assert old["state"].iloc[0] == "Stable" and old["client_id"].notna().all()

        (latest,) = wait_until(lambda: described("new", "consumer"), 15, "the consumer group described")
        assert len(set(latest["member"])) == 1 and latest["client_id"].notna().all()
        # a reconciled member stands at the group epoch
        assert (latest["member_epoch"] == latest["generation"]).all() and latest["generation"].iloc[0] >= 1

        (queue,) = wait_until(lambda: described("queue", "share"), 15, "the share group described")
        assert len(set(queue["member"])) == 1 and (queue["member_epoch"] == queue["generation"]).all()
        assert queue["committed_offset"].isna().all()  # share groups commit no offsets

        def share_rows() -> object:
            rows = cluster.metrics.frame("share_partition")
            rows = rows[rows["group"] == "queue"].sort_values("time").drop_duplicates("partition", keep="last") \
                if not rows.empty else rows
            return (rows,) if len(rows) == 2 and rows["acknowledged_total"].sum() == 6 else None

        (rows,) = wait_until(share_rows, 15, "share-partition rows counting 6 acknowledged records")
        assert sum(sum(d.values()) for d in rows["accepted_by"]) == 6 and (rows["start_offset"] == 3).all()
        # the broker answers ShareGroupDescribe on the Kafka listener as it does for real clients
        (answer,) = share_group_describe(cluster.bootstrap_servers, "queue").groups
        assert answer.error_code == ErrorCode.none and answer.group_epoch == int(queue["generation"].iloc[0])
        assert [m.member_id for m in answer.members] == list(set(queue["member"]))
        assert sorted((t.topic_name, p) for t in answer.members[0].assignment.topic_partitions
                      for p in t.partitions) == [("jobs", 0), ("jobs", 1)]
        (other,) = share_group_describe(cluster.bootstrap_servers, "new").groups
        assert other.error_code == ErrorCode.group_id_not_found and "consumer group" in other.error_message
        # the live views read the same rows
        view = ShareGroupView(cluster.metrics, "queue").figure_data()
        assert sum(next(t for t in view["data"] if t["name"] == "acknowledged")["y"]) == 6
        timeline = RebalanceTimeline(cluster.metrics, "new").figure_data()
        labels = next(t for t in timeline["data"] if t["name"] == "member epochs")
        assert sorted(set(labels["y"])) == ["jobs-0", "jobs-1"] and all(x.startswith("e") for x in labels["text"])
    finally:
        for c in (classic, new, share):
            c.close()
