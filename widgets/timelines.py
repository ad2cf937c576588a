"""Timelines: ISR size per partition with fault events, and partition ownership in a group
(with member epochs and revocations for the KIP-848 consumer protocol)."""

from __future__ import annotations

import math
import re
from typing import Any

from kafkalab.metrics import as_rows

from .base import (
    EVENT_LINE,
    TIME_AXIS_TITLE,
    FigureData,
    Source,
    View,
    base_layout,
    empty_note,
    is_true,
    pick_topic,
    plain,
)

MAX_EVENT_MARKS = 60  # markers carry no text, so many fit; the oldest go first
STALE_AFTER_S = 3.0   # as in replicas.py: a leader silent this long no longer counts
ISR_FULL, ISR_SHRUNK, NO_LEADER = 2, 1, 0
LANE_COLORS = {NO_LEADER: "#d62728", ISR_SHRUNK: "#ff7f0e", ISR_FULL: "#2ca02c"}
LANE_WORDS = {NO_LEADER: "no leader reporting", ISR_SHRUNK: "ISR shrunk", ISR_FULL: "ISR full"}
# Events that explain an ISR change; chatter such as role_change would bury them.
ISR_EVENTS = frozenset({
    "kill", "restart", "pause", "resume", "stop", "cut", "heal", "partition", "delay",
    "isr_shrink", "isr_expand", "isr_change", "leader_election", "broker_fenced",
    "broker_unfenced",
})


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _int(value: Any) -> int | None:
    return None if _missing(value) else int(value)


def event_words(event: dict[str, Any]) -> str:
    """An event row in plain words: "broker 2 killed", "orders-0: leader now 1 (epoch 3)"."""
    kind = str(event.get("event"))
    broker = _int(event.get("broker"))
    detail = event.get("detail")
    detail = detail if isinstance(detail, str) and detail else ""
    partition = _int(event.get("partition"))
    name = f"{event.get('topic')}-{partition}" if partition is not None else ""
    isr = event.get("isr")
    isr_text = f"[{', '.join(str(int(b)) for b in isr)}]" if isinstance(isr, list) else ""
    who = f"broker {broker}" if broker is not None else (detail or "a process")
    simple = {"kill": "killed", "restart": "restarted", "pause": "paused", "resume": "resumed",
              "stop": "stopped (controlled shutdown)"}
    if kind in simple:
        return f"{who} {simple[kind]}"
    if kind in ("cut", "partition"):
        return f"network cut: {detail}" if detail else "network cut"
    if kind == "heal":
        return "network healed"
    if kind == "delay":
        return f"delay added: {detail}"
    if kind == "leader_election":
        leader = _int(event.get("leader"))
        how = " (UNCLEAN: a replica outside the ISR)" if detail == "unclean" else ""
        chosen = f"broker {leader}" if leader is not None and leader >= 0 else "no broker"
        return (f"{name}: {chosen} elected leader, epoch {_int(event.get('leader_epoch'))}"
                f"{how}")
    if kind in ("isr_shrink", "isr_expand", "isr_change"):
        verb = {"isr_shrink": "ISR shrank to", "isr_expand": "ISR grew to"}.get(kind, "ISR now")
        return f"{name}: {verb} {isr_text}".rstrip()
    if kind == "broker_fenced":
        return f"{who} fenced by the controller" + (f" ({detail})" if detail else "")
    if kind == "broker_unfenced":
        return f"{who} unfenced: back in service"
    return f"{kind} {detail or who}".strip()


def event_marks(events: Any, start_time: float, topic: str | None = None,
                kinds: frozenset[str] | None = ISR_EVENTS) -> list[dict[str, Any]]:
    """Events of `kinds` (all when None), oldest first, as dicts with `x` (seconds since
    start), `lane` ("P0", or "events" for one about no partition), `words` and `event`; events
    about another topic are left out."""
    events = as_rows(events)
    if kinds is not None:
        events = [e for e in events if e.get("event") in kinds]
    if topic is not None:
        events = [e for e in events if _missing(e.get("topic")) or e.get("topic") == topic]
    events = sorted(events, key=lambda e: e["time"])[-MAX_EVENT_MARKS:]
    out = []
    for event in events:
        partition = _int(event.get("partition"))
        out.append({"x": float(event["time"] - start_time),
                    "lane": f"P{partition}" if partition is not None else "events",
                    "words": event_words(event), "event": str(event["event"])})
    return out


def isr_lanes(replicas: Any, topic: str, times: list[float],
              stale_after_s: float = STALE_AFTER_S) -> dict[int, list[tuple[int | None, str]]]:
    """Per partition, at each of `times`: (state, hover words). The state is ISR_FULL,
    ISR_SHRUNK or NO_LEADER from the newest-epoch leader's last report before that time;
    None before the first report.

    Only reports from the leader of the newest epoch count, so a deposed leader that keeps
    talking (a zombie behind a network cut) does not draw a false ISR.
    """
    by_partition: dict[Any, list[dict[str, Any]]] = {}
    for row in as_rows(replicas):
        if row.get("topic") == topic and not _missing(row.get("partition")):
            by_partition.setdefault(row["partition"], []).append(row)
    out: dict[int, list[tuple[int | None, str]]] = {}
    for partition in sorted(by_partition):
        part = by_partition[partition]
        replicas_n = len({r.get("broker") for r in part} - {None})
        leads = []
        newest_epoch = -math.inf
        for r in sorted((r for r in part if is_true(r.get("is_leader"))), key=lambda r: r["time"]):
            epoch = r.get("leader_epoch")
            if _missing(epoch):
                continue  # no epoch: it cannot be the newest
            newest_epoch = max(newest_epoch, float(epoch))
            if float(epoch) >= newest_epoch:
                leads.append(r)
        report_times = [float(r["time"]) for r in leads]
        isrs, leaders = [r.get("isr") for r in leads], [r["broker"] for r in leads]
        cells: list[tuple[int | None, str]] = []
        i = -1
        for t in times:
            while i + 1 < len(report_times) and report_times[i + 1] <= t:
                i += 1
            if i < 0:
                cells.append((None, ""))
                continue
            isr = isrs[i] if isinstance(isrs[i], list) else []
            if t - report_times[i] > stale_after_s:
                cells.append((NO_LEADER, f"P{partition}: no leader reporting "
                                         f"(last: broker {int(leaders[i])}, ISR {isr})"))
            else:
                state = ISR_FULL if len(isr) >= replicas_n else ISR_SHRUNK
                cells.append((state, f"P{partition}: leader {int(leaders[i])}, ISR {isr} "
                                     f"({len(isr)} of {replicas_n})"))
        out[int(partition)] = cells
    return out


def isr_figure_data(replicas: Any, events: Any, topic: str | None,
                    start_time: float, now: float | None = None, window_s: float = 120.0,
                    step_s: float | None = None) -> FigureData:
    """One lane per partition (green: ISR full, orange: shrunk, red: no leader), so no
    partition can hide another; events as markers with their story in the hover. The
    window is fixed, `window_s` up to `now`: it scrolls, it never stretches."""
    replicas = as_rows(replicas)
    topic = pick_topic(replicas, topic)
    if now is None:
        now = float(max(r["time"] for r in replicas)) if replicas else start_time
    step = step_s or max(window_s / 120.0, 0.25)
    right = now - start_time
    left = right - window_s
    layout = base_layout(f"ISR of {topic!r} over time, a lane per partition",
                         xaxis={"title": {"text": TIME_AXIS_TITLE, "standoff": 2},
                                "range": [left, right], "autorange": False},
                         showlegend=False)
    layout["margin"] = {"l": 55, "r": 10, "t": 40, "b": 72}
    layout["title"] = {"text": layout["title"]["text"], "x": 0.01, "y": 0.98,
                       "font": {"size": 14}}
    # Bucket edges on multiples of `step`, so a refresh shifts whole cells, never resamples.
    first = (left // step) * step
    centres = [first + (k + 0.5) * step for k in range(int((right - first) / step) + 1)]
    lanes = isr_lanes(replicas, topic, [c + start_time for c in centres]) if topic else {}
    names = [f"P{p}" for p in sorted(lanes)]
    traces: list[dict[str, Any]] = []
    if lanes:
        # The events row is in the heatmap too, empty: Plotly's heatmap cannot share a
        # category axis with a row it does not have.
        z = [*[[cell[0] for cell in lanes[p]] for p in sorted(lanes)], [None] * len(centres)]
        text = [*[[cell[1] for cell in lanes[p]] for p in sorted(lanes)], [""] * len(centres)]
        scale = []
        for code in (NO_LEADER, ISR_SHRUNK, ISR_FULL):
            scale += [[code / 3, LANE_COLORS[code]], [(code + 1) / 3, LANE_COLORS[code]]]
        traces.append({"type": "heatmap", "name": "ISR", "x": centres, "y": [*names, "events"],
                       "z": z, "text": text, "hoverongaps": False, "zmin": -0.5, "zmax": 2.5, "colorscale": scale,
                       "showscale": False, "xgap": 0, "ygap": 3,
                       "hovertemplate": "%{text}<extra></extra>"})
    marks = [m for m in event_marks(events, start_time, topic)
             if m["x"] >= left and m["lane"] in (*names, "events")]
    traces.append({"type": "scatter", "mode": "markers", "name": "events",
                   "x": plain(m["x"] for m in marks), "y": plain(m["lane"] for m in marks),
                   "marker": {"symbol": "diamond", "size": 9, "color": "#222222",
                              "line": {"color": "white", "width": 1}},
                   "customdata": plain(m["words"] for m in marks),
                   "hovertemplate": "%{customdata}<extra></extra>"})
    layout["yaxis"] = {"type": "category", "categoryorder": "array",
                       "categoryarray": [*reversed(names), "events"], "fixedrange": True}
    layout["annotations"] = [{
        "text": "  ".join(f"<span style='color:{LANE_COLORS[c]}'>■</span> {LANE_WORDS[c]}"
                          for c in (ISR_FULL, ISR_SHRUNK, NO_LEADER))
                + "  ◆ event: hover it",
        "xref": "paper", "yref": "paper", "x": 0, "y": 0, "yanchor": "top", "yshift": -46,
        "xanchor": "left", "showarrow": False, "font": {"size": 10}}]
    if not lanes:
        layout["annotations"].append(empty_note("no leader has reported yet"))
    return {"data": traces, "layout": layout}


def _group_rows(groups: Any, group: str) -> list[dict[str, Any]]:
    return sorted((r for r in as_rows(groups) if r.get("group") == group), key=lambda r: r["time"])


def ownership_intervals(groups: Any, group: str, end_time: float | None = None,
                        column: str = "assignment") -> list[dict[str, Any]]:
    """(member, topic_partition, start, end) spans, as dicts in that order, from a group's
    assignment reports, sorted.

    Each report's assignment holds until the next report; the last holds until `end_time`
    (default: the last report). `column="revoking"` gives the spans of partitions a
    consumer-protocol member still holds while it gives them up.
    """
    rows = _group_rows(groups, group)
    if not rows:
        return []
    times = [float(r["time"]) for r in rows]
    ends = times[1:] + [max(end_time if end_time is not None else times[-1], times[-1])]
    open_spans: dict[tuple[str, str], float] = {}
    spans = []
    for t, end, row in zip(times, ends, rows, strict=True):
        assignment = row.get(column)
        owned = {(m, tp) for m, tps in (assignment if isinstance(assignment, dict) else {}).items()
                 for tp in tps}
        for key in list(open_spans):
            if key not in owned:
                spans.append((*key, open_spans.pop(key), t))
        for key in owned:
            open_spans.setdefault(key, t)
        last_end = end
    spans.extend((*key, start, last_end) for key, start in open_spans.items())
    return [dict(zip(("member", "topic_partition", "start", "end"), span, strict=True))
            for span in sorted(spans)]


_UUID = re.compile(r"-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_WORKER = re.compile(r"^(.*-worker-\d+)-\d+-\d+$")
MEMBER_GONE = frozenset({"member_kill", "member_leave"})


def member_node(member_id: str) -> str:
    """The process a member id belongs to: Kafka's member id is `<client.id>-<uuid>`, and a
    kafkalab client's client.id is its node name ("client-3", "billing-worker-1-…")."""
    return _UUID.sub("", str(member_id))


def member_names(member_ids: list[str]) -> dict[str, str]:
    """Readable, distinct names: "client-3", "billing-worker-2"; "consumer #2" on a clash."""
    names: dict[str, str] = {}
    used: dict[str, int] = {}
    for member in sorted(member_ids):
        node = member_node(member)
        short = m.group(1) if (m := _WORKER.match(node)) else node
        used[short] = used.get(short, 0) + 1
        names[member] = short if used[short] == 1 else f"{short} #{used[short]}"
    return names


def member_count(members: Any) -> int:
    """A group row's members: a count (the coordinator's reports) or a list of ids."""
    if isinstance(members, list | tuple | set):
        return len(members)
    return 0 if _missing(members) else int(members)


REVOKING_COLOR = "#d62728"


def member_epoch_marks(groups: Any, group: str) -> list[dict[str, Any]]:
    """Consumer-protocol groups (KIP-848): where each member's epoch moved, dicts of (time,
    member, topic_partition, epoch), one per partition it owned then, to label its bars.
    Empty for classic groups (their reports carry no member epochs)."""
    last: dict[str, int] = {}
    out = []
    for row in _group_rows(groups, group):
        epochs, assignment = row.get("member_epochs"), row.get("assignment")
        if not isinstance(epochs, dict):
            continue
        owned = assignment if isinstance(assignment, dict) else {}
        for member, epoch in sorted(epochs.items()):
            if last.get(member) == epoch:
                continue
            last[member] = epoch
            out += [{"time": float(row["time"]), "member": member, "topic_partition": tp,
                     "epoch": int(epoch)} for tp in owned.get(member, [])]
    return out


def _new_protocol(rows: list[dict[str, Any]]) -> bool:
    return any(isinstance(r.get("member_epochs"), dict) for r in rows)


def rebalance_figure_data(groups: Any, group: str, start_time: float,
                          now: float | None = None, events: Any = None,
                          window_s: float | None = None) -> FigureData:
    """A bar of colour per member along each partition's row; generations and killed or
    departed members as markers on a top row ("group"), their words in the hover. A member's
    bars end where it was killed or left, not where the group noticed.

    For a consumer-protocol group (KIP-848) the generation is the group epoch; each member's
    bars are labelled with its member epoch ("e3") where it moved, and a partition the member
    is still revoking is drawn thin and red until it lets go (reconciliation)."""
    layout = base_layout(f"Who owns which partition in group {group!r}",
                         xaxis={"title": {"text": TIME_AXIS_TITLE}},
                         legend={"orientation": "h", "y": -0.28, "font": {"size": 10}})
    layout["margin"] = {"l": 80, "r": 10, "t": 40, "b": 60}
    layout["title"] = {"text": layout["title"]["text"], "x": 0.01, "y": 0.98,
                       "font": {"size": 14}}
    if now is not None and window_s is not None:
        layout["xaxis"].update(range=[now - window_s - start_time, now - start_time],
                               autorange=False)
    groups = as_rows(groups)
    spans = ownership_intervals(groups, group, now)
    gone: dict[str, tuple[float, str]] = {}  # node -> (time, "killed" | "left")
    left = sorted((e for e in as_rows(events)
                   if e.get("event") in MEMBER_GONE and e.get("group") == group),
                  key=lambda e: e["time"])
    for event in left:
        gone.setdefault(str(event.get("detail")), (
            float(event["time"]), "killed" if event["event"] == "member_kill" else "left"))
    by_member: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        by_member.setdefault(span["member"], []).append(span)
    names = member_names(list(by_member))
    traces = []
    marks: list[tuple[float, str, str]] = []  # x, symbol, words
    for member in sorted(by_member):
        died = gone.get(member_node(member))
        x: list[float | None] = []
        y: list[str | None] = []
        for span in by_member[member]:
            begin, end = float(span["start"]), float(span["end"])
            if died is not None:
                end = min(end, died[0])
            if end <= begin:
                continue
            x += [begin - start_time, end - start_time, None]
            y += [span["topic_partition"], span["topic_partition"], None]
        traces.append({"type": "scatter", "mode": "lines", "name": names[member],
                       "x": x, "y": y, "line": {"width": 12}, "connectgaps": False,
                       "hovertemplate": names[member] + " owns %{y}<extra></extra>"})
        if died is not None:
            marks.append((died[0] - start_time, "x", f"{names[member]} {died[1]}"))
    rows = _group_rows(groups, group)
    new_protocol = _new_protocol(rows)
    generation = "group epoch" if new_protocol else "generation"
    seen: set[Any] = set()
    for row in rows:  # the first report of each generation
        if row.get("generation") in seen:
            continue
        seen.add(row.get("generation"))
        members = member_count(row.get("members"))
        marks.append((float(row["time"] - start_time), "line-ns",
                      f"{generation} {int(row['generation'])}: {members} member"
                      f"{'s' if members != 1 else ''}"))
    marks.sort()
    partitions = sorted({s["topic_partition"] for s in spans})
    if new_protocol:
        revoking = ownership_intervals(groups, group, now, "revoking")
        x, y, words = [], [], []
        for span in revoking:
            who = names.get(span["member"]) or member_names([span["member"]])[span["member"]]
            x += [float(span["start"]) - start_time, float(span["end"]) - start_time, None]
            y += [span["topic_partition"], span["topic_partition"], None]
            words += [f"{who} revoking {span['topic_partition']}"] * 2 + [None]
        partitions = sorted({*partitions, *(s["topic_partition"] for s in revoking)})
        traces.append({"type": "scatter", "mode": "lines", "name": "revoking",
                       "x": x, "y": y, "line": {"width": 4, "color": REVOKING_COLOR, "dash": "dot"},
                       "connectgaps": False, "customdata": words,
                       "hovertemplate": "%{customdata}<extra></extra>"})
        labels = member_epoch_marks(groups, group)
        traces.append({"type": "scatter", "mode": "text", "name": "member epochs", "showlegend": False,
                       "x": [float(m["time"]) - start_time for m in labels],
                       "y": [m["topic_partition"] for m in labels],
                       "text": [f"e{m['epoch']}" for m in labels], "textposition": "top right",
                       "textfont": {"size": 9},
                       "customdata": [f"{names.get(m['member'], m['member'])}: member epoch {m['epoch']}"
                                      for m in labels],
                       "hovertemplate": "%{customdata}<extra></extra>"})
    traces.append({"type": "scatter", "mode": "markers", "name": "rebalances",
                   "x": [m[0] for m in marks], "y": ["group"] * len(marks),
                   "marker": {"symbol": [m[1] for m in marks], "size": 12, "color": "#222222",
                              "line": {"width": 2, "color": "#222222"}},
                   "customdata": [m[2] for m in marks], "showlegend": False,
                   "hovertemplate": "%{customdata}<extra></extra>"})
    layout["yaxis"] = {"type": "category", "categoryorder": "array",
                       "categoryarray": [*reversed(partitions), "group"], "fixedrange": True}
    key = (f"│ new group epoch   eN member epoch   <span style='color:{REVOKING_COLOR}'>┈</span> revoking"
           "   ✕ member left") if new_protocol else "│ new generation   ✕ member killed or left (hover for who)"
    layout["annotations"] = [{
        "text": key,
        "xref": "paper", "yref": "paper", "x": 1, "y": 1.0, "yanchor": "bottom",
        "xanchor": "right", "showarrow": False, "font": {"size": 10, "color": EVENT_LINE}}]
    if not spans:
        layout["annotations"].append(empty_note("no assignment reported yet"))
    return {"data": traces, "layout": layout}


class IsrTimeline(View):
    """ISR size per partition over time, with kills, cuts and elections marked."""

    def __init__(self, source: Source, topic: str | None = None, window_s: float = 120.0) -> None:
        self.topic = topic
        super().__init__(source, window_s)

    def figure_data(self) -> FigureData:
        now = self.source.now()
        # Reports from before the window still say what the ISR was when it opened.
        since = self.since(now) - STALE_AFTER_S
        return isr_figure_data(self.source.rows("replica", since), self.source.rows("event", since),
                               self.topic, self.source.start_time, now, self.window_s)


class RebalanceTimeline(View):
    """Which member owned which partition when, generations marked."""

    def __init__(self, source: Source, group: str, window_s: float = 300.0) -> None:
        self.group = group
        super().__init__(source, window_s)

    def figure_data(self) -> FigureData:
        now = self.source.now()
        since = self.since(now)
        return rebalance_figure_data(self.source.rows("group", since), self.group,
                                     self.source.start_time, now, self.source.rows("event", since),
                                     self.window_s)
