"""`kafkalab demo`: the whole story in a terminal, in well under a minute.

Start 3 brokers, create a replicated topic, produce with acks=all, kill the leader of a
partition, watch a new leader take over, and check that every acknowledged record can be read
back. Exits non-zero if anything acknowledged was lost.
"""

from __future__ import annotations

import sys
import time
from typing import Any


def _bar(done: int, total: int, width: int = 30) -> str:
    filled = int(width * done / max(total, 1))
    return "[" + "#" * filled + "." * (width - filled) + f"] {done}/{total}"


def run_demo(records: int = 5000, out: Any = None) -> int:
    from kafkalab import Cluster, TopicPartition

    out = out or sys.stdout
    live = bool(getattr(out, "isatty", lambda: False)())

    def say(msg: str = "") -> None:
        print(msg, file=out, flush=True)

    t0 = time.monotonic()
    say("1. Starting a controller and 3 brokers as real processes ...")
    with Cluster(brokers=3) as cluster:
        say(f"   up in {time.monotonic() - t0:.1f}s; bootstrap.servers={cluster.bootstrap_servers}")
        say("2. Creating topic 'orders': 3 partitions, replication factor 3, min.insync.replicas=2")
        cluster.create_topic("orders", partitions=3, replication_factor=3, config={"min.insync.replicas": 2})
        producer = cluster.producer({"acks": "all", "linger.ms": 5})
        acked: dict[bytes, tuple[int, int]] = {}
        failed: list[Any] = []

        def on_delivery(err: Any, msg: Any) -> None:
            if err is None:
                acked[msg.value()] = (msg.partition(), msg.offset())
            else:
                failed.append(err)

        def produce(start: int, count: int) -> None:
            for i in range(start, start + count):
                producer.produce("orders", key=f"user-{i % 50}".encode(), value=f"order-{i}".encode(),
                                 on_delivery=on_delivery)
                if i % 500 == 0:
                    producer.poll(0)
                    if live:  # a log file gets one line, not a pile of \r updates
                        out.write("\r   " + _bar(len(acked), records))
            producer.flush(30)
            out.write(("\r" if live else "") + "   " + _bar(len(acked), records) + "\n")

        say("3. Producing with acks=all ...")
        half = records // 2
        produce(0, half)
        before = cluster.describe_topic("orders")
        leader = int(before.iloc[0].leader)
        say(before.to_string(index=False))
        say(f"4. Killing broker {leader}, the leader of partition 0 (SIGKILL, no goodbye) ...")
        t_kill = time.monotonic()
        cluster.kill_broker(leader)
        produce(half, records - half)
        say(f"   producing resumed; all {records} sent {time.monotonic() - t_kill:.2f}s after the kill")
        after = cluster.describe_topic("orders")
        new_leader = int(after.iloc[0].leader)
        say(f"   partition 0: leader {leader} -> {new_leader}, leader epoch "
            f"{int(before.iloc[0].leader_epoch)} -> {int(after.iloc[0].leader_epoch)}, isr {after.iloc[0].isr}")
        say("5. Reading everything back from the surviving replicas ...")
        consumer = cluster.consumer({"auto.offset.reset": "earliest"})
        consumer.assign([TopicPartition("orders", p, 0) for p in range(3)])
        seen: dict[bytes, tuple[int, int]] = {}
        deadline = time.monotonic() + 30
        while len(seen) < len(acked) and time.monotonic() < deadline:
            for m in consumer.consume(1000, 0.5):
                if m.error() is None:
                    seen[m.value()] = (m.partition(), m.offset())
        consumer.close()
        lost = [v for v in acked if v not in seen]
        moved = [v for v, po in acked.items() if v in seen and seen[v] != po]
        say(after.to_string(index=False))
        say(f"   acknowledged: {len(acked)}, read back: {len(seen)}, lost: {len(lost)}, "
            f"at another offset: {len(moved)}, produce errors: {len(failed)}")
        producer.close()
        ok = not lost and not moved and len(acked) == records
        say("Nothing acknowledged was lost: acks=all waited for the in-sync replicas, and the new "
            "leader came from the ISR." if ok else "Something acknowledged went missing: that is a bug.")
        say(f"Done in {time.monotonic() - t0:.1f}s.")
        return 0 if ok else 1
