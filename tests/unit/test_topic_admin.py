"""The controller's admin decisions (topic configs, new partitions, elections) and the broker's
DescribeConfigs, as pure functions: records in, answers out."""

from __future__ import annotations

from kio.schema.describe_configs.v4 import request as dc_req
from kio.schema.describe_configs.v4 import response as dc_resp
from kio.schema.errors import ErrorCode
from test_controller import make

from kafkalab.broker.admin import (
    DEFAULT_CONFIG,
    STATIC_BROKER_CONFIG,
    TOPIC_CONFIG,
    describe_configs,
)
from kafkalab.config import broker_config
from kafkalab.controller.topic_admin import (
    APPEND,
    DELETE,
    PREFERRED,
    SET,
    UNCLEAN,
    alter_topic_config,
    create_partitions,
    elect_leaders,
    incremental_overrides,
)


def test_a_config_change_is_one_config_record_per_key_and_a_bad_one_is_refused():
    c, image, log, _ = make()
    c.create_topic("t", 1, 3, {"retention.ms": "1000"})
    assert alter_topic_config(c, "t", {"segment.bytes": "2048"}) == (ErrorCode.none, "")
    assert log[-2:] == [  # AlterConfigs: the old override removed (null value), the new one set
        {"type": "ConfigRecord", "resource_type": 2, "resource_name": "t", "name": "retention.ms", "value": None},
        {"type": "ConfigRecord", "resource_type": 2, "resource_name": "t", "name": "segment.bytes", "value": "2048"},
    ]
    assert image.topics["t"].configs == {"segment.bytes": "2048"}   # AlterConfigs replaces the set
    code, msg = alter_topic_config(c, "t", {"segment.byte": "1"})
    assert code == ErrorCode.invalid_config and "did you mean 'segment.bytes'" in msg
    assert alter_topic_config(c, "nope", {})[0] == ErrorCode.unknown_topic_or_partition
    before = len(log)
    assert alter_topic_config(c, "t", {"retention.ms": "5"}, validate_only=True)[0] == ErrorCode.none
    assert len(log) == before


def test_config_record_values_are_strings_as_kafkas():
    # Kafka's ConfigRecord carries the value as a string, whatever type the config has; the
    # image keeps the strings and the typed values come from topic_config.
    c, image, log, _ = make()
    c.create_topic("t", 1, 1, {"retention.ms": 1000, "cleanup.policy": ["compact", "delete"],
                               "min.cleanable.dirty.ratio": 0.25, "unclean.leader.election.enable": True})
    values = {r["name"]: r["value"] for r in log if r["type"] == "ConfigRecord"}
    assert values == {"retention.ms": "1000", "cleanup.policy": "compact,delete",
                      "min.cleanable.dirty.ratio": "0.25", "unclean.leader.election.enable": "true"}
    assert image.topics["t"].configs == values
    cfg = c.topic_configs("t")
    assert (cfg["retention.ms"], cfg["cleanup.policy"], cfg["unclean.leader.election.enable"]) == (
        1000, ["compact", "delete"], True)
    before = len(log)
    assert alter_topic_config(c, "t", {**values, "retention.ms": 1000})[0] == ErrorCode.none
    assert len(log) == before   # 1000 and "1000" are the same value: nothing to write


def test_incremental_operations_set_delete_and_append_to_lists():
    c, image, _, _ = make()
    c.create_topic("t", 1, 1, {"retention.ms": "1000"})
    result, overrides = incremental_overrides(c, "t", [("retention.ms", DELETE, None), ("segment.ms", SET, "60000"),
                                                       ("cleanup.policy", APPEND, "compact")])
    assert result[0] == ErrorCode.none
    assert overrides == {"segment.ms": "60000", "cleanup.policy": "delete,compact"}
    result, _ = incremental_overrides(c, "t", [("retention.ms", APPEND, "1")])
    assert result[0] == ErrorCode.invalid_config and "use SET" in result[1]


def test_partitions_are_added_never_removed():
    c, image, log, _ = make()
    c.create_topic("t", 2, 2)
    assert create_partitions(c, "t", 2)[0] == ErrorCode.invalid_partitions
    assert create_partitions(c, "t", 4) == (ErrorCode.none, "")
    assert sorted(image.topics["t"].partitions) == [0, 1, 2, 3]
    new = image.topics["t"].partitions[3]
    assert len(new.replicas) == 2 and new.leader == new.replicas[0] and new.leader_epoch == 0
    code, msg = create_partitions(c, "t", 5, assignments=[[1, 1]])
    assert code == ErrorCode.invalid_replica_assignment and "distinct" in msg


def test_preferred_and_unclean_elections_follow_kafkas_rules():
    c, image, _, _ = make()
    c.create_topic("t", 1, 3, assignments={0: [1, 2, 3]})
    assert elect_leaders(c, PREFERRED, [("t", 0)])[("t", 0)][0] == ErrorCode.election_not_needed
    c.fence_broker(1, reason="test")
    assert image.partition("t", 0).leader == 2
    assert elect_leaders(c, PREFERRED, [("t", 0)])[("t", 0)][0] == ErrorCode.preferred_leader_not_available
    assert elect_leaders(c, UNCLEAN, [("t", 0)])[("t", 0)][0] == ErrorCode.election_not_needed
    assert elect_leaders(c, PREFERRED, [("nope", 0)])[("nope", 0)][0] == ErrorCode.unknown_topic_or_partition


def test_describe_configs_names_each_values_source():
    c, image, _, _ = make()
    c.create_topic("t", 1, 1, {"segment.bytes": "4096"})
    broker = broker_config("lab", {"log.retention.minutes": 5})
    req = dc_req.DescribeConfigsRequest(resources=(
        dc_req.DescribeConfigsResource(resource_type=2, resource_name="t", configuration_keys=None),
        dc_req.DescribeConfigsResource(resource_type=4, resource_name="1", configuration_keys=("log.retention.minutes",)),
        dc_req.DescribeConfigsResource(resource_type=4, resource_name="2", configuration_keys=None)),
        include_synonyms=True, include_documentation=False)
    topic, broker_res, other = describe_configs(req, dc_resp.DescribeConfigsResponse, image, broker, 1).results
    got = {e.name: e for e in topic.configs}
    assert (got["segment.bytes"].value, got["segment.bytes"].config_source) == ("4096", TOPIC_CONFIG)
    assert (got["retention.ms"].value, got["retention.ms"].config_source) == ("300000", STATIC_BROKER_CONFIG)
    assert [s.name for s in got["retention.ms"].synonyms] == ["log.retention.minutes", "retention.ms"]
    assert got["cleanup.policy"].config_source == DEFAULT_CONFIG and not got["cleanup.policy"].read_only
    (minutes,) = broker_res.configs
    assert (minutes.value, minutes.config_source, minutes.read_only) == ("5", STATIC_BROKER_CONFIG, True)
    assert other.error_code == ErrorCode.invalid_request
