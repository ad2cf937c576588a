"""The transactional producer's state machine: Kafka's TransactionManager.State table."""

from __future__ import annotations

import pytest

from kafkalab.client.transaction_state import (
    IllegalTxnTransition,
    TxnClientState,
    TxnState,
    is_transition_valid,
)
from kafkalab.protocol.errors import ErrorCode, KafkaError

S = TxnState


def test_a_transaction_goes_round_and_starts_clean():
    txn = TxnClientState()
    for target in (S.INITIALIZING, S.READY, S.IN_TRANSACTION):
        txn.transition(target)
    txn.added.add(("t", 0))
    txn.offsets_added = True
    for target in (S.COMMITTING_TRANSACTION, S.READY, S.IN_TRANSACTION):
        txn.transition(target)
    assert txn.state is S.IN_TRANSACTION and not txn.added and not txn.offsets_added


@pytest.mark.parametrize(("source", "target"), [
    (S.UNINITIALIZED, S.IN_TRANSACTION),  # begin before init
    (S.READY, S.COMMITTING_TRANSACTION),  # commit with no transaction
    (S.COMMITTING_TRANSACTION, S.ABORTING_TRANSACTION),  # a commit that timed out is retried, not aborted
    (S.ABORTABLE_ERROR, S.COMMITTING_TRANSACTION),  # an abortable error is aborted
    (S.FATAL_ERROR, S.READY),  # fatal is for good
    (S.IN_TRANSACTION, S.IN_TRANSACTION),
])
def test_an_illegal_transition_raises_and_changes_nothing(source, target):
    txn = TxnClientState()
    txn.state = source
    with pytest.raises(IllegalTxnTransition, match=f"from {source.name} to {target.name}"):
        txn.transition(target)
    assert txn.state is source


def test_the_table_is_kafkas():
    legal = {(a, b) for a in S for b in S if is_transition_valid(a, b)}
    assert all((a, S.FATAL_ERROR) in legal for a in S)
    assert {a for a, b in legal if b is S.ABORTING_TRANSACTION} == {S.IN_TRANSACTION, S.ABORTABLE_ERROR}
    assert {a for a, b in legal if b is S.READY} == {S.INITIALIZING, S.COMMITTING_TRANSACTION,
                                                     S.ABORTING_TRANSACTION}
    assert {a for a, b in legal if b is S.IN_TRANSACTION} == {S.READY}
    assert not any(a is S.FATAL_ERROR for a, b in legal if b is not S.FATAL_ERROR)


def test_errors_from_the_sender():
    lost = KafkaError(ErrorCode.not_enough_replicas)
    fenced = KafkaError(ErrorCode.producer_fenced)
    txn = TxnClientState()
    txn.state = S.ABORTING_TRANSACTION
    txn.fail(lost, fatal=False)  # already aborting: as Kafka, nothing changes
    assert txn.state is S.ABORTING_TRANSACTION and txn.error is None
    txn.state = S.COMMITTING_TRANSACTION
    txn.fail(lost, fatal=False)
    txn.fail(KafkaError(ErrorCode.request_timed_out), fatal=False)  # the first error is kept
    assert txn.state is S.ABORTABLE_ERROR and txn.error is lost
    txn.fail(fenced, fatal=True)
    txn.fail(KafkaError(ErrorCode.invalid_producer_epoch), fatal=True)
    assert txn.state is S.FATAL_ERROR and txn.error is fenced


def test_an_answer_for_an_ended_transaction_does_not_count_for_the_next():
    txn = TxnClientState()
    for target in (S.INITIALIZING, S.READY, S.IN_TRANSACTION):
        txn.transition(target)
    asked = txn.start_adding({("t", 0)})
    assert txn.adding == {("t", 0)}
    for target in (S.ABORTING_TRANSACTION, S.READY, S.IN_TRANSACTION):
        txn.transition(target)
    assert not txn.adding_done(asked, {("t", 0)}, True)  # late: the next transaction must add it itself
    assert txn.added == set() and txn.adding == set()
    now = txn.start_adding({("t", 1)})
    assert txn.adding_done(now, {("t", 1)}, True)
    assert txn.added == {("t", 1)} and txn.adding == set()
