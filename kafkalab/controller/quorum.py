"""The controller quorum's protocol helpers: timeouts, NOT_CONTROLLER answers, committed reads.

Every controller process is a Raft voter (kafkalab.controller.server): one voter for a single
controller, three or five for a quorum. What only the protocol decides lives here, pure: the
`controller.quorum.*` timeouts of each profile, which requests belong to Raft, the
NOT_CONTROLLER answer in each controller API's shape, and the committed prefix of a log read
(brokers never apply a record that a new leader could truncate).
"""

from __future__ import annotations

import datetime
from typing import Any

from kio.schema.errors import ErrorCode

from kafkalab.metadata.topic import METADATA_TOPIC
from kafkalab.nodes import CONTROLLER_NODE, SINGLE_CONTROLLER_ID
from kafkalab.protocol.api_keys import ApiKey
from kafkalab.protocol.apis import response_class, schema_module
from kafkalab.records.scan import iter_batches

NO_THROTTLE = datetime.timedelta(0)
RAFT_APIS = frozenset({ApiKey.VOTE, ApiKey.BEGIN_QUORUM_EPOCH, ApiKey.END_QUORUM_EPOCH, ApiKey.FETCH,
                       ApiKey.FETCH_SNAPSHOT})
# KRaft's controller.quorum.* timeouts as RaftNode arguments. "kafka" is Kafka's defaults
# (election 1 s, randomised up to 2 s; fetch 2 s; request 2 s; 500 ms fetch wait); "lab" is
# tight enough that a killed active controller is replaced well within a second.
QUORUM_TIMEOUTS: dict[str, dict[str, Any]] = {
    "lab": {"election_timeout_ms": (100, 200), "fetch_timeout_ms": 300, "request_timeout_ms": 150,
            "fetch_max_wait_ms": 50},
    "kafka": {"election_timeout_ms": (1000, 2000), "fetch_timeout_ms": 2000, "request_timeout_ms": 2000,
              "fetch_max_wait_ms": 500},
}


def controller_id_of(node: str) -> int | None:
    """The controller id a node name stands for (None: not a controller)."""
    if node == CONTROLLER_NODE:
        return SINGLE_CONTROLLER_ID
    prefix = "controller-"
    if node.startswith(prefix) and node[len(prefix):].isdigit():
        return int(node[len(prefix):])
    return None


# -- pure helpers ---------------------------------------------------------------------------


def read_committed(data: bytes, high_watermark: int) -> bytes:
    """The whole batches of `data` (a log read) that lie below the high watermark: brokers
    must never apply a record that a new leader could truncate."""
    end = 0
    for pos, h in iter_batches(data):
        if h.next_offset > high_watermark:
            break
        end = pos + h.size
    return bytes(data[:end])


def not_controller_response(api_key: int, version: int, request: Any) -> Any | None:
    """NOT_CONTROLLER in the shape of each controller API's response (None: no such API)."""
    cls = response_class(api_key, version)
    code = ErrorCode.not_controller
    if api_key == ApiKey.BROKER_REGISTRATION:
        return cls(throttle_time=NO_THROTTLE, error_code=code, broker_epoch=-1)
    if api_key == ApiKey.BROKER_HEARTBEAT:
        return cls(throttle_time=NO_THROTTLE, error_code=code, is_caught_up=False, is_fenced=True,
                   should_shut_down=False)
    if api_key == ApiKey.CREATE_TOPICS:
        mod = schema_module(cls)
        return cls(throttle_time=NO_THROTTLE, topics=tuple(mod.CreatableTopicResult(
            name=t.name, topic_id=None, error_code=code, error_message="not the active controller",
            num_partitions=-1, replication_factor=-1, configs=None) for t in request.topics))
    if api_key == ApiKey.DELETE_TOPICS:
        mod = schema_module(cls)
        return cls(throttle_time=NO_THROTTLE, responses=tuple(mod.DeletableTopicResult(
            name=t.name, topic_id=t.topic_id, error_code=code, error_message=None) for t in request.topics))
    if api_key == ApiKey.ALTER_PARTITION:
        return cls(throttle_time=NO_THROTTLE, error_code=code, topics=())
    if api_key == ApiKey.ELECT_LEADERS:
        return cls(throttle_time=NO_THROTTLE, error_code=code, replica_election_results=())
    if api_key == ApiKey.ALLOCATE_PRODUCER_IDS:
        return cls(throttle_time=NO_THROTTLE, error_code=code, producer_id_start=-1, producer_id_len=0)
    if api_key in (ApiKey.ALTER_CONFIGS, ApiKey.INCREMENTAL_ALTER_CONFIGS):
        mod = schema_module(cls)
        return cls(throttle_time=NO_THROTTLE, responses=tuple(mod.AlterConfigsResourceResponse(
            error_code=code, error_message="not the active controller", resource_type=r.resource_type,
            resource_name=r.resource_name) for r in request.resources))
    if api_key == ApiKey.CREATE_PARTITIONS:
        mod = schema_module(cls)
        return cls(throttle_time=NO_THROTTLE, results=tuple(mod.CreatePartitionsTopicResult(
            name=t.name, error_code=code, error_message="not the active controller") for t in request.topics))
    return None


def metadata_fetch_error(resp_cls: Any, leader_hint: int, epoch: int) -> Any:
    """A broker's metadata fetch to a controller that is not active: who leads, if known."""
    mod = schema_module(resp_cls)
    part = mod.PartitionData(partition_index=0, error_code=ErrorCode.not_controller, high_watermark=-1,
                             current_leader=mod.LeaderIdAndEpoch(leader_id=leader_hint, leader_epoch=epoch),
                             aborted_transactions=None, records=None)
    return resp_cls(throttle_time=NO_THROTTLE, error_code=ErrorCode.none, session_id=0,
                    responses=(mod.FetchableTopicResponse(topic=METADATA_TOPIC, partitions=(part,)),))
