"""The transactional producer's client-side state: Kafka's TransactionManager.State.

Two threads change it: the application's (init, begin, commit, abort) and the sender's (a
batch or an AddPartitionsToTxn that failed ends the transaction). Every change goes through
`TxnClientState` under its lock and is checked against Kafka's table of legal transitions
(`TransactionManager.State.isTransitionValid`); an illegal one raises IllegalTxnTransition and
changes nothing.
"""

from __future__ import annotations

import enum
import threading

from kafkalab.errors import KafkaLabError
from kafkalab.protocol.errors import KafkaError


class TxnState(enum.Enum):
    UNINITIALIZED = "UNINITIALIZED"
    INITIALIZING = "INITIALIZING"
    READY = "READY"
    IN_TRANSACTION = "IN_TRANSACTION"
    COMMITTING_TRANSACTION = "COMMITTING_TRANSACTION"
    ABORTING_TRANSACTION = "ABORTING_TRANSACTION"
    ABORTABLE_ERROR = "ABORTABLE_ERROR"
    FATAL_ERROR = "FATAL_ERROR"  # entered from any state, never left: close the producer


S = TxnState
# target -> the states it may be entered from (FATAL_ERROR: from any). Kafka's table, less
# the move back to UNINITIALIZED that only its idempotent, non-transactional producer makes.
ALLOWED_FROM: dict[TxnState, frozenset[TxnState]] = {
    S.INITIALIZING: frozenset({S.UNINITIALIZED, S.ABORTING_TRANSACTION}),
    S.READY: frozenset({S.INITIALIZING, S.COMMITTING_TRANSACTION, S.ABORTING_TRANSACTION}),
    S.IN_TRANSACTION: frozenset({S.READY}),
    S.COMMITTING_TRANSACTION: frozenset({S.IN_TRANSACTION}),
    S.ABORTING_TRANSACTION: frozenset({S.IN_TRANSACTION, S.ABORTABLE_ERROR}),
    S.ABORTABLE_ERROR: frozenset({S.IN_TRANSACTION, S.COMMITTING_TRANSACTION, S.ABORTABLE_ERROR,
                                  S.INITIALIZING}),
}


def is_transition_valid(source: TxnState, target: TxnState) -> bool:
    return target is S.FATAL_ERROR or source in ALLOWED_FROM.get(target, ())


class IllegalTxnTransition(KafkaLabError, RuntimeError):
    def __init__(self, source: TxnState, target: TxnState):
        super().__init__(f"a transactional producer cannot go from {source.name} to {target.name}")
        self.source, self.target = source, target


class TxnClientState:
    """What the application's thread and the sender share about the current transaction."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.state = S.UNINITIALIZED
        self.added: set[tuple[str, int]] = set()  # AddPartitionsToTxn acknowledged
        self.adding: set[tuple[str, int]] = set()
        self.offsets_added = False
        self.error: KafkaError | None = None  # the abortable or fatal error that ended the transaction
        self.generation = 0  # transactions begun: an answer meant for an earlier one is dropped

    def transition(self, target: TxnState) -> None:
        """Move to target; IllegalTxnTransition (and no change) if Kafka's table forbids it.
        A new transaction (IN_TRANSACTION) and an ended one (READY) start with nothing added."""
        with self._lock:
            if not is_transition_valid(self.state, target):
                raise IllegalTxnTransition(self.state, target)
            self.state = target
            if target is S.IN_TRANSACTION:
                self.added, self.adding, self.offsets_added, self.error = set(), set(), False, None
                self.generation += 1
            elif target is S.READY:
                self.added, self.offsets_added, self.error = set(), False, None

    def start_adding(self, tps: set[tuple[str, int]]) -> int:
        """The sender asks the coordinator to add tps (AddPartitionsToTxn): the transaction's
        generation, to hand back with the answer."""
        with self._lock:
            self.adding |= tps
            return self.generation

    def adding_done(self, generation: int, tps: set[tuple[str, int]], added: bool) -> bool:
        """The coordinator answered for tps. False (and nothing changes) if the transaction that
        asked has ended since: its answer must not count for the next one."""
        with self._lock:
            if generation != self.generation:
                return False
            self.adding -= tps
            if added:
                self.added |= tps
            return True

    def fail(self, error: KafkaError, *, fatal: bool) -> None:
        """An error ended the transaction: FATAL_ERROR for a fatal one, else ABORTABLE_ERROR
        (the first error of each kind is kept). As Kafka, an abortable error changes nothing
        while the transaction is being aborted, or where no transaction is open."""
        with self._lock:
            if fatal:
                if self.state is not S.FATAL_ERROR or self.error is None:
                    self.state, self.error = S.FATAL_ERROR, error
            elif self.error is None and is_transition_valid(self.state, S.ABORTABLE_ERROR):
                self.state, self.error = S.ABORTABLE_ERROR, error
