"""Checkers and reference functions for lab 10 (The controller and metadata, KRaft)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from checkers import Feedback, call_learner, right, wrong

# -- Exercise 1: which brokers does the controller fence? -----------------------------------


def fenced_brokers_reference(last_heartbeat_ms: Mapping[int, int], now_ms: int,
                             heartbeat_interval_ms: int, session_timeout_ms: int) -> set[int]:
    """The brokers whose session has expired: no heartbeat for longer than the session timeout.
    (The heartbeat interval only says how often a healthy broker sends one.)"""
    return {b for b, last in last_heartbeat_ms.items() if now_ms - last > session_timeout_ms}


# (last heartbeat per broker, now, heartbeat interval, session timeout); no case sits exactly on
# the boundary, so > and >= both count as right.
FENCE_CASES: list[tuple[dict[int, int], int, int, int]] = [
    ({1: 10_000, 2: 10_000, 3: 10_000}, 10_050, 100, 500),     # everybody fresh
    ({1: 10_000, 2: 9_300, 3: 9_950}, 10_000, 100, 500),       # 2 silent for 700 ms > 500
    ({1: 10_000, 2: 9_700, 3: 9_850}, 10_000, 100, 500),       # 2 missed heartbeats, but 300 ms < 500
    ({1: 0, 2: 5_000, 3: 8_999}, 18_000, 2_000, 9_000),        # Kafka's defaults: 1 and 2 expired
    ({4: 1_000, 5: 1_000}, 1_000, 100, 500),                    # ids need not start at 1
]


def check_fenced_brokers(fn: Callable[[dict[int, int], int, int, int], Any]) -> Feedback:
    """Exercise 1: fenced_brokers(last_heartbeat_ms, now_ms, heartbeat_interval_ms, session_timeout_ms) -> set."""
    for last, now, interval, timeout in FENCE_CASES:
        done, got = call_learner(fn, dict(last), now, interval, timeout)
        if not done:
            return got
        try:
            got = set(got)
        except TypeError:
            return wrong(f"return a set of broker ids, not {got!r}.")
        want = fenced_brokers_reference(last, now, interval, timeout)
        if got == want:
            continue
        case = (f"fenced_brokers({last}, now_ms={now}, heartbeat_interval_ms={interval}, "
                f"session_timeout_ms={timeout}) returned {got}, expected {want}")
        alive = set(last) - want
        if got == alive and got != want:
            return wrong(f"{case}: you returned the brokers that are still alive; return the ones "
                         "whose session has expired.")
        if got == {b for b, t in last.items() if now - t > interval}:
            return wrong(f"{case}: a single missed heartbeat does not fence a broker. Heartbeats come every "
                         "broker.heartbeat.interval.ms; the controller waits broker.session.timeout.ms "
                         "(several intervals) without one before it fences.")
        return wrong(f"{case}: a broker is fenced when now_ms - its last heartbeat > session_timeout_ms.")
    return right("the controller fences a broker whose last heartbeat is older than broker.session.timeout.ms "
                 "(0.5 s in the lab profile, 9 s in Kafka).")


# -- Exercise 2: quorum arithmetic -----------------------------------------------------------


def quorum_sizes_reference(voters: int) -> tuple[int, int]:
    """(majority, how many voters may fail and still leave a majority) for `voters` voters."""
    majority = voters // 2 + 1
    return majority, voters - majority


QUORUM_CASES = [1, 2, 3, 4, 5, 6, 7]


def check_quorum_sizes(fn: Callable[[int], Any]) -> Feedback:
    """Exercise 2: quorum_sizes(n) -> (majority, failures tolerated)."""
    for n in QUORUM_CASES:
        done, got = call_learner(fn, n)
        if not done:
            return got
        want = quorum_sizes_reference(n)
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            return wrong(f"return a pair (majority, failures_tolerated), e.g. (2, 1) for 3 voters; "
                         f"quorum_sizes({n}) returned {got!r}.")
        got = tuple(got)
        if got == want:
            continue
        case = f"quorum_sizes({n}) returned {got}, expected {want}"
        majority, tolerated = got
        if isinstance(majority, float) or isinstance(tolerated, float):
            return wrong(f"{case}: votes are whole voters: use integer division (n // 2), not n / 2.")
        if majority == n // 2 and n % 2 == 0:
            return wrong(f"{case}: exactly half is not a majority: with {n} voters two halves of {n // 2} "
                         "could each elect a leader. A majority is MORE than half: n // 2 + 1.")
        if majority == want[0] and tolerated == want[0]:
            return wrong(f"{case}: the second number is how many voters may FAIL: the survivors must still "
                         "form a majority, so it is n - majority.")
        if majority == want[0] and tolerated == n // 2 and n % 2 == 0:
            return wrong(f"{case}: with {n} voters, losing {n // 2} leaves only {n - n // 2}, which is not a "
                         f"majority of {n}. An even number of voters tolerates no more failures than one "
                         "voter fewer — which is why quorums have 3 or 5 voters.")
        return wrong(f"{case}: majority = n // 2 + 1; failures tolerated = n - majority.")
    return right("3 voters tolerate 1 failure, 5 tolerate 2; a 4th or 6th voter adds none, only more "
                 "voters to wait for.")


# -- Exercise 3: the Raft vote rule ----------------------------------------------------------


def grants_vote_reference(candidate: Mapping[str, Any], voter: Mapping[str, Any]) -> bool:
    """Whether `voter` grants its vote to `candidate` (KRaft's Vote request).

    candidate: id, epoch (the epoch it stands in), last_epoch and end_offset of its log.
    voter: epoch (the newest it knows), voted_for (whom it voted for in that epoch, or None),
    last_epoch and end_offset of its own log.
    """
    if candidate["epoch"] < voter["epoch"]:
        return False                          # a candidate from the past
    if candidate["epoch"] == voter["epoch"] and voter["voted_for"] is not None:
        return voter["voted_for"] == candidate["id"]   # one vote per epoch (a repeat is fine)
    # A newer epoch frees the voter's vote. Grant it only to a log at least as up to date:
    # the later last epoch wins; with equal last epochs, the longer log.
    return (candidate["last_epoch"], candidate["end_offset"]) >= (voter["last_epoch"], voter["end_offset"])


def _c(id_: int, epoch: int, last_epoch: int, end_offset: int) -> dict[str, Any]:
    return {"id": id_, "epoch": epoch, "last_epoch": last_epoch, "end_offset": end_offset}


def _v(epoch: int, voted_for: int | None, last_epoch: int, end_offset: int) -> dict[str, Any]:
    return {"epoch": epoch, "voted_for": voted_for, "last_epoch": last_epoch, "end_offset": end_offset}


# (name of the rule a case tests, candidate, voter)
VOTE_CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("plain", _c(2, 5, 4, 120), _v(4, None, 4, 118)),
    ("equal-logs", _c(2, 5, 4, 120), _v(4, None, 4, 120)),
    ("shorter-log", _c(2, 5, 4, 110), _v(4, None, 4, 118)),
    ("older-last-epoch", _c(2, 5, 3, 200), _v(4, None, 4, 118)),   # longer, but from an older epoch
    ("newer-last-epoch", _c(3, 6, 5, 90), _v(5, None, 4, 118)),    # shorter, but it saw epoch 5
    ("stale-epoch", _c(2, 3, 4, 120), _v(4, None, 4, 118)),
    ("voted-other", _c(2, 5, 4, 120), _v(5, 3, 4, 118)),
    ("voted-same", _c(2, 5, 4, 120), _v(5, 2, 4, 118)),
    ("new-epoch-frees-vote", _c(2, 6, 4, 120), _v(5, 3, 4, 118)),
]


def check_grants_vote(fn: Callable[[dict[str, Any], dict[str, Any]], Any]) -> Feedback:
    """Exercise 3: grants_vote(candidate, voter) -> bool."""
    for rule, cand, voter in VOTE_CASES:
        done, got = call_learner(fn, dict(cand), dict(voter))
        if not done:
            return got
        if not isinstance(got, bool):
            return wrong(f"return True or False, not {got!r}.")
        want = grants_vote_reference(cand, voter)
        if got == want:
            continue
        case = f"grants_vote(candidate={cand}, voter={voter}) returned {got}, expected {want}"
        hints = {
            "equal-logs": "a log exactly as up to date as the voter's is good enough: compare with >=, not >.",
            "shorter-log": "the candidate's log is shorter than the voter's in the same epoch: it may lack "
                           "committed records, so electing it could lose them.",
            "older-last-epoch": "compare the last epochs FIRST: the candidate's log is longer, but it ends in "
                                "an older epoch, so its tail may be records that a later leader replaced. "
                                "(last_epoch, end_offset) are compared as a pair, like a tuple.",
            "newer-last-epoch": "compare the last epochs first: the candidate saw a newer epoch than the voter, "
                                "so its log is more up to date even though it is shorter.",
            "stale-epoch": "the candidate stands in an epoch older than the one the voter already knows: "
                           "reject it, whatever its log.",
            "voted-other": "the voter already voted for another candidate in this epoch: one vote per epoch "
                           "(that is what makes two leaders in one epoch impossible).",
            "voted-same": "the voter already voted for THIS candidate in this epoch (the request was "
                          "repeated): answer the same way again, True.",
            "new-epoch-frees-vote": "the candidate stands in a NEWER epoch than the voter's vote: that vote was "
                                    "for an older epoch, so the voter is free to vote again (if the log is "
                                    "up to date).",
            "plain": "a candidate in a newer epoch with a log at least as up to date gets the vote.",
        }
        return wrong(f"{case}: {hints[rule]}")
    return right("one vote per epoch, never for a candidate from an older epoch, and only for a log at least "
                 "as up to date — (last epoch, end offset) compared as a pair.")
