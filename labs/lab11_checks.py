"""Checkers and reference functions for lab 11 (Production patterns)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from checkers import Feedback, call_learner, right, wrong

# -- Exercise 1: retry, dead-letter topic, or stop? ---------------------------------------

PERMANENT = "permanent"   # the record itself is bad (cannot be parsed, fails validation)
TRANSIENT = "transient"   # something it depends on is briefly unavailable (a timeout)
FATAL = "fatal"           # the consumer cannot go on safely (the DLT cannot be written, bad config)


def route_reference(error_kind: str, attempt: int, max_attempts: int) -> str:
    """What to do with a record whose processing just failed for the `attempt`-th time."""
    if error_kind == FATAL:
        return "fail"
    if error_kind == PERMANENT:
        return "dlt"
    if error_kind == TRANSIENT:
        return "retry" if attempt < max_attempts else "dlt"
    return "fail"     # an error you did not plan for: stop rather than skip records blindly


ROUTE_CASES: list[tuple[str, int, int]] = [
    (TRANSIENT, 1, 3),
    (TRANSIENT, 2, 3),
    (TRANSIENT, 3, 3),
    (PERMANENT, 1, 3),
    (FATAL, 1, 3),
    (TRANSIENT, 1, 1),
    (PERMANENT, 2, 5),
    (FATAL, 4, 5),
    (TRANSIENT, 5, 5),
    (TRANSIENT, 4, 5),
]


def check_route(fn: Callable[[str, int, int], Any]) -> Feedback:
    """Exercise 1: route(error_kind, attempt, max_attempts) -> "retry" | "dlt" | "fail"."""
    for kind, attempt, max_attempts in ROUTE_CASES:
        done, got = call_learner(fn, kind, attempt, max_attempts)
        if not done:
            return got
        want = route_reference(kind, attempt, max_attempts)
        if got == want:
            continue
        case = f"route({kind!r}, attempt={attempt}, max_attempts={max_attempts}) returned {got!r}, expected {want!r}"
        if got not in ("retry", "dlt", "fail"):
            return wrong(f"{case}: return one of the strings 'retry', 'dlt' or 'fail'.")
        if kind == PERMANENT and got == "retry":
            return wrong(f"{case}: a record that cannot be parsed fails the same way every time; "
                         "retrying it only delays the partition. Send it to the DLT at once.")
        if kind == FATAL and got == "dlt":
            return wrong(f"{case}: a fatal error is not about this record. Shipping records to the DLT "
                         "and committing past them would empty the topic into the DLT; stop instead.")
        if kind == TRANSIENT and got == "retry" and attempt >= max_attempts:
            return wrong(f"{case}: retries must be bounded. After max_attempts attempts the record goes "
                         "to the DLT, or one stubborn record blocks its partition forever.")
        if kind == TRANSIENT and got == "dlt" and attempt == max_attempts - 1:
            return wrong(f"{case}: off by one. `attempt` counts the attempts made so far, so "
                         f"attempt {attempt} of {max_attempts} still leaves one more try.")
        if kind == TRANSIENT and got == "dlt":
            return wrong(f"{case}: a timeout may well work on the next try; retry while "
                         "attempt < max_attempts.")
        if kind == TRANSIENT and got == "fail":
            return wrong(f"{case}: one slow call is no reason to stop the whole consumer; retry, "
                         "then dead-letter the record.")
        return wrong(f"{case}: permanent -> 'dlt' at once, transient -> 'retry' while "
                     "attempt < max_attempts and then 'dlt', fatal -> 'fail'.")
    return right("bad records go to the DLT at once, flaky ones after bounded retries, and a broken "
                 "consumer stops instead of skipping the whole topic.")


# -- Exercise 2: a lag alert that does not flap -------------------------------------------

def lag_alert_reference(samples: Sequence[int], threshold: int, for_samples: int) -> list[bool]:
    """Firing or not after each sample: the last `for_samples` samples were all above threshold."""
    firing, run = [], 0
    for lag in samples:
        run = run + 1 if lag > threshold else 0
        firing.append(run >= for_samples)
    return firing


ALERT_CASES: list[tuple[list[int], int, int]] = [
    ([0, 50, 120, 130, 140, 150, 90, 40], 100, 3),
    ([120, 90, 130, 80, 140, 70, 150, 60], 100, 2),     # flapping around the threshold: never fires
    ([100, 100, 100, 101, 101], 100, 2),                # equal is not above
    ([500, 600, 700, 10, 800, 900], 100, 1),            # for_samples=1: a plain threshold
    ([0, 0, 0], 100, 3),
    ([200, 210, 220, 230, 240, 250, 5, 260, 270, 280], 100, 3),
]


def check_lag_alert(fn: Callable[[list[int], int, int], Any]) -> Feedback:
    """Exercise 2: lag_alert(samples, threshold, for_samples) -> list of bools, one per sample."""
    for samples, threshold, for_samples in ALERT_CASES:
        done, got = call_learner(fn, list(samples), threshold, for_samples)
        if not done:
            return got
        want = lag_alert_reference(samples, threshold, for_samples)
        try:
            got = [bool(x) for x in got]
        except TypeError:
            return wrong(f"return a list of booleans (one per sample), not {got!r}.")
        if got == want:
            continue
        case = (f"lag_alert({samples}, threshold={threshold}, for_samples={for_samples}) returned {got}, "
                f"expected {want}")
        if len(got) != len(samples):
            return wrong(f"{case}: return one boolean per sample, {len(samples)} here.")
        if got == [lag > threshold for lag in samples]:
            return wrong(f"{case}: this fires on the first sample above the threshold. Wait until "
                         f"{for_samples} samples IN A ROW are above it, so a short spike does not page anyone.")
        if got == lag_alert_reference(samples, threshold - 1, for_samples):
            return wrong(f"{case}: a lag equal to the threshold is not above it; use `>`, not `>=`.")
        if got == lag_alert_reference(samples, threshold, for_samples + 1):
            return wrong(f"{case}: off by one. The alert fires ON the {for_samples}-th consecutive sample "
                         "above the threshold, not the one after it.")
        if for_samples > 1 and got == lag_alert_reference(samples, threshold, for_samples - 1):
            return wrong(f"{case}: off by one. It fires only once {for_samples} consecutive samples "
                         "are above the threshold.")
        above = 0
        total = []
        for lag in samples:
            above += lag > threshold
            total.append(above >= for_samples)
        if got == total:
            return wrong(f"{case}: count CONSECUTIVE samples above the threshold: a sample at or below "
                         "it resets the count to 0.")
        if any(g and lag <= threshold for g, lag in zip(got, samples, strict=False)):
            return wrong(f"{case}: once the lag is back at or below the threshold the alert resolves "
                         "(like Prometheus' `for:` rule: it fires while the condition has held for N "
                         "evaluations).")
        return wrong(f"{case}: sample i fires when samples i-{for_samples - 1}..i are all above the threshold.")
    return right("the alert fires only after N samples in a row above the threshold, so a spike or "
                 "the saw-tooth of periodic commits does not page anyone.")


# -- Exercise 3: how many partitions? -----------------------------------------------------

def partitions_needed_reference(target: float, producer_per_partition: float,
                                consumer_per_partition: float) -> int:
    """partitions = max(target / producer throughput, target / consumer throughput), rounded up."""
    return max(1, math.ceil(max(target / producer_per_partition, target / consumer_per_partition)))


PARTITION_CASES: list[tuple[float, float, float]] = [
    (1000, 5000, 250),     # consumers are the bottleneck: 4
    (300, 100, 1000),      # producers are: 3
    (1000, 400, 300),      # 2.5 and 3.33 -> 4
    (100, 1000, 1000),     # one partition is plenty
    (2000, 500, 500),      # exactly 4, not 5
    (50, 10, 20),          # 5 and 2.5 -> 5
]


def _typical_partition_mistakes() -> list[tuple[Callable[[float, float, float], float], str]]:
    return [
        (lambda t, p, c: math.ceil(min(t / p, t / c)),
         "both sides must keep up, so take the LARGER of the two counts (max), not the smaller."),
        (lambda t, p, c: math.floor(max(t / p, t / c)),
         "round UP: 2.5 partitions' worth of work needs 3 partitions, not 2."),
        (lambda t, p, c: math.floor(max(t / p, t / c)) + 1,
         "use math.ceil, not floor + 1: when the division is exact, no extra partition is needed."),
        (lambda t, p, c: math.ceil(t / p + t / c),
         "producers and consumers work in parallel on the same partitions; take the max of the two "
         "counts, not their sum."),
        (lambda t, p, c: math.ceil(t / p),
         "that only covers the producers. Consumers of one partition must keep up too: include "
         "target / consumer throughput."),
        (lambda t, p, c: math.ceil(t / c),
         "that only covers the consumers. Include target / producer throughput."),
    ]


def check_partitions_needed(fn: Callable[[float, float, float], Any]) -> Feedback:
    """Exercise 3: partitions_needed(target, producer_per_partition, consumer_per_partition) -> int."""
    answers = []
    for target, p, c in PARTITION_CASES:
        done, got = call_learner(fn, target, p, c)
        if not done:
            return got
        if isinstance(got, bool) or not isinstance(got, int | float) or got != int(got):
            return wrong(f"partitions_needed({target}, {p}, {c}) returned {got!r}: a partition count "
                         "is a whole number; round UP with math.ceil.")
        answers.append(int(got))
    wants = [partitions_needed_reference(*case) for case in PARTITION_CASES]
    if answers == wants:
        return right("the slower side (here usually the consumer, with its per-record work) sets the count; "
                     "add headroom for growth, since adding partitions later moves keys.")
    i = next(i for i, (a, w) in enumerate(zip(answers, wants, strict=True)) if a != w)
    target, p, c = PARTITION_CASES[i]
    case = (f"partitions_needed(target={target}, producer={p}, consumer={c}) returned {answers[i]}, "
            f"expected {wants[i]}")
    for mistake, hint in _typical_partition_mistakes():
        if answers == [mistake(*case_args) for case_args in PARTITION_CASES]:
            return wrong(f"{case}: {hint}")
    if answers[i] < 1:
        return wrong(f"{case}: a topic has at least one partition.")
    return wrong(f"{case}: ceil(max(target / producer_per_partition, target / consumer_per_partition)).")
