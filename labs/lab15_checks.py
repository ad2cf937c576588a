"""Checkers for the recap notebook (Kafka in 30 seconds / 2 minutes)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from checkers import Feedback, call_learner, not_answered, right, wrong

# question -> (right letter, the hint for a wrong letter, the lab that shows it)
QUIZ: dict[int, tuple[str, str]] = {
    1: ("b", "a consumer reads only below the high watermark: records every in-sync replica has "
             "(lab 05, section 2)."),
    2: ("a", "the default partitioner hashes the key (murmur2) modulo the partition count, so a key "
             "keeps its partition as long as the count does not change (lab 02)."),
    3: ("b", "a partition is read by one member of a group at a time, so the partition count caps "
             "a group's parallelism; extra members sit idle (lab 04)."),
    4: ("a", "every leader change bumps the leader epoch, and brokers reject requests from an older "
             "epoch: a cut-off old leader cannot keep acting as leader (labs 05 and 09)."),
    5: ("b", "since Kafka 0.9 committed offsets are records in the internal topic __consumer_offsets, "
             "written through the group coordinator (lab 04)."),
    6: ("b", "acks=all waits for every replica in the ISR, not every replica: a dead follower leaves "
             "the ISR and stops holding writes back; min.insync.replicas is the smallest ISR with which "
             "the leader still accepts such a write, or advances the high watermark (lab 05)."),
}


def check_quiz(answers: Mapping[int, Any]) -> Feedback:
    """Exercise 1: the six-question quiz, answers as {question: "a" | "b" | "c"}."""
    if not isinstance(answers, Mapping):
        return wrong("answers should be a dict like {1: \"a\", 2: \"c\", ...}.")
    given = {q: answers.get(q) for q in QUIZ}
    if all(v is None for v in given.values()):
        return not_answered()
    missing = [q for q, v in given.items() if v is None]
    if missing:
        return Feedback(None, f"Questions {missing} are still unanswered.")
    bad = {q: str(v).strip().lower() for q, v in given.items() if str(v).strip().lower() not in "abc" or
           len(str(v).strip()) != 1}
    if bad:
        return wrong(f"answer each question with one letter, a, b or c; got {bad}.")
    wrong_qs = [q for q, v in given.items() if str(v).strip().lower() != QUIZ[q][0]]
    if wrong_qs:
        hints = " ".join(f"Q{q}: {QUIZ[q][1]}" for q in wrong_qs)
        return wrong(f"{len(QUIZ) - len(wrong_qs)} of {len(QUIZ)} right. {hints}")
    return right(f"{len(QUIZ)} of {len(QUIZ)}.")


def _is_all(acks: Any) -> bool:
    return str(acks).strip().lower() in ("all", "-1")


def check_durable_settings(fn: Callable[[], Mapping[str, Any]]) -> Feedback:
    """Exercise 2: durable_settings() -> the settings that keep acknowledged writes through one
    broker failure without refusing writes."""
    done, got = call_learner(fn)
    if not done:
        return got
    if not isinstance(got, Mapping):
        return wrong(f"durable_settings() returned {got!r}; return a dict with the keys "
                     "replication_factor, min.insync.replicas, acks, enable.idempotence, "
                     "unclean.leader.election.enable.")
    keys = ("replication_factor", "min.insync.replicas", "acks", "enable.idempotence",
            "unclean.leader.election.enable")
    missing = [k for k in keys if k not in got]
    if missing:
        return wrong(f"missing keys: {missing}.")
    try:
        rf, min_isr = int(got["replication_factor"]), int(got["min.insync.replicas"])
    except (TypeError, ValueError):
        return wrong("replication_factor and min.insync.replicas are whole numbers.")
    if rf < 3:
        return wrong(f"replication_factor={rf}: with fewer than 3 copies, one broker down leaves too "
                     "few replicas to both keep writing and keep a second copy of every write.")
    if not _is_all(got["acks"]):
        return wrong(f"acks={got['acks']!r}: only acks=all waits for the in-sync replicas; with acks=1 a "
                     "leader crash can lose records it had already acknowledged (lab 05, section 5).")
    if min_isr < 2:
        return wrong(f"min.insync.replicas={min_isr}: with 1, acks=all is satisfied by the leader alone "
                     "once the ISR has shrunk to it, so a single crash can still lose acknowledged writes.")
    if min_isr > rf - 1:
        return wrong(f"min.insync.replicas={min_isr} with replication_factor={rf}: one broker down "
                     "would leave fewer in-sync replicas than required and every acks=all write would "
                     "fail with NOT_ENOUGH_REPLICAS. Keep it at most replication_factor - 1.")
    if got["enable.idempotence"] not in (True, "true"):
        return wrong("enable.idempotence should be true: without it a retried batch whose first "
                     "acknowledgement was lost is written twice (lab 06).")
    if got["unclean.leader.election.enable"] not in (False, "false"):
        return wrong("unclean.leader.election.enable should stay false: an out-of-sync replica "
                     "elected leader drops acknowledged records (lab 05, section 6).")
    return right(f"RF={rf}, min.insync.replicas={min_isr}, acks=all, idempotence on, no unclean "
                 "elections: Kafka's durable set-up.")
