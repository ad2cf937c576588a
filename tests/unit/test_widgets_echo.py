"""A chart whose browser model stops hearing the kernel never stays blank or frozen.

EchoWatch decides from edit ids and times alone; LiveFigure puts the first figure into the
browser model's starting state; a View swaps a deaf FigureWidget for a new one.
"""

from __future__ import annotations

from typing import Any

import ipywidgets.widgets.widget as widget_module
import pytest

from kafkalab.metrics import MetricsSnapshot
from kafkalab.widgets import ReplicaView
from kafkalab.widgets.base import LIVE_CLASS, EchoWatch, LiveFigure

T0 = 1_000.0


def replica(t: float, broker: int, leo: int) -> dict[str, Any]:
    return {"time": t, "node": f"broker-{broker}", "broker": broker, "topic": "orders",
            "partition": 0, "is_leader": broker == 1, "leader": 1, "leader_epoch": 0,
            "log_start_offset": 0, "log_end_offset": leo, "high_watermark": leo,
            "last_stable_offset": leo, "isr": [1, 2], "segments": 1, "size_bytes": 0}


def test_no_answer_from_any_view_is_not_deafness():
    # Nothing displayed the widget (or its notebook is closed): no reason to replace it.
    watch = EchoWatch(deaf_after_s=10)
    watch.sent(1, now=0)
    assert not watch.deaf(now=1_000)


def test_an_edit_unanswered_after_a_view_answered_is_deafness_once_patience_runs_out():
    watch = EchoWatch(deaf_after_s=10)
    watch.sent(1, now=0)
    watch.sent(2, now=1)
    watch.echoed(0)  # the view drew the starting state, but never heard edit 1
    assert not watch.deaf(now=9.9)
    assert watch.deaf(now=10)


def test_answers_clear_the_edits_they_cover():
    watch = EchoWatch(deaf_after_s=10)
    for edit in (1, 2, 3):
        watch.sent(edit, now=edit)
    watch.echoed(2)  # in flight: 3 is still on its way
    assert not watch.deaf(now=12.9)
    assert watch.deaf(now=13)
    watch.echoed(3)
    assert not watch.deaf(now=100)
    watch.sent(3, now=200)  # an edit id already answered (nothing new sent) is no edit
    assert not watch.deaf(now=300)


def test_a_model_hears_once_a_view_answers_an_edit_sent_after_it_opened():
    watch = EchoWatch(deaf_after_s=5, opened_at_edit=3)
    assert not watch.needs_probe()  # nothing drew it yet
    watch.echoed(3)  # a view drew the starting state: deaf or not, nobody knows
    assert not watch.hearing and watch.needs_probe()
    watch.sent(4, now=0)
    assert not watch.needs_probe()  # the probe is on its way
    watch.echoed(4)
    assert watch.hearing and not watch.needs_probe()


def test_a_live_figure_opens_its_browser_model_with_the_whole_first_figure(monkeypatch):
    opened: list[dict[str, Any]] = []
    create_comm = widget_module.comm.create_comm

    def recording_create_comm(**kwargs: Any) -> Any:
        opened.append(kwargs["data"]["state"])
        return create_comm(**kwargs)

    monkeypatch.setattr(widget_module.comm, "create_comm", recording_create_comm)
    figure = LiveFigure([{"type": "bar", "x": [1, 2], "y": [3, 4], "name": "leo"}],
                        {"title": {"text": "Replicas"}}, {"displayModeBar": False})
    assert len(opened) == 1 and figure.comm is not None
    state = opened[0]
    assert [(t["type"], t["name"], t["y"]) for t in state["_widget_data"]] == [
        ("bar", "leo", [3, 4])]
    assert state["_widget_layout"]["title"]["text"] == "Replicas"
    assert state["_config"]["displayModeBar"] is False


@pytest.fixture
def view(monkeypatch) -> ReplicaView:
    monkeypatch.setattr(ReplicaView, "deaf_after_s", 0.0)  # an unanswered edit is deafness
    snap = MetricsSnapshot(start_time=T0)
    for broker in (1, 2):
        snap.add("replica", replica(T0 + 1, broker, 100))
    return ReplicaView(snap, "orders")


def echo(figure: Any, edit_id: int) -> None:
    """What Plotly's front-end sends after drawing or applying an update."""
    figure._js2py_traceDeltas = {"trace_deltas": [], "trace_edit_id": edit_id}


def test_a_still_chart_is_probed_once_drawn_and_marked_live_when_the_probe_is_answered(view):
    figure = view.figure
    assert view.refresh() is False and LIVE_CLASS not in view.widget._dom_classes
    echo(figure, figure._last_trace_edit_id)  # drawn, nothing sent since it opened
    before = figure._last_trace_edit_id
    view.refresh()
    assert figure._last_trace_edit_id == before + 1  # the probe
    assert figure.layout.meta == {"probe": before + 1}
    echo(figure, before + 1)
    view.refresh()
    assert LIVE_CLASS in view.widget._dom_classes and view.figure is figure


def test_a_still_chart_whose_probe_goes_unanswered_is_replaced(view):
    figure = view.figure
    echo(figure, figure._last_trace_edit_id)
    view.refresh()  # sends the probe; deaf_after_s is 0, but the probe was just sent
    view.refresh()  # unanswered: deaf
    assert view.replaced == 1 and view.figure is not figure
    assert LIVE_CLASS not in view.widget._dom_classes


def test_a_view_swaps_a_deaf_figure_for_one_that_shows_the_current_figure(view):
    first = view.figure
    assert view.widget.children == (first,)
    view.source.add("replica", replica(T0 + 2, 1, 130))
    assert view.refresh() is True
    edit = first._last_trace_edit_id
    assert edit > 0
    echo(first, 0)  # the browser drew the starting state and never heard the edit
    assert view.refresh() is True and view.replaced == 1
    second = view.figure
    assert second is not first and view.widget.children == (second,)
    assert first.comm is None  # the deaf one is closed
    assert second.data[0].y == first.data[0].y and 130 in second.data[0].y
    # The new figure hears: its answers keep it.
    echo(second, second._last_trace_edit_id)
    view.source.add("replica", replica(T0 + 3, 1, 140))
    assert view.refresh() is True
    echo(second, second._last_trace_edit_id)
    assert view.refresh() is False and view.figure is second and view.replaced == 1
    # A late answer from the closed figure changes nothing.
    echo(first, edit)
    assert view.figure is second


def test_a_view_that_hears_its_answers_keeps_its_figure(view):
    first = view.figure
    for leo in (130, 140, 150):
        view.source.add("replica", replica(T0 + 2, 1, leo))
        assert view.refresh() is True
        echo(first, first._last_trace_edit_id)
    assert view.refresh() is False and view.figure is first and view.replaced == 0


def test_closing_a_views_widget_closes_its_figure(view):
    figure = view.figure
    view.widget.close()
    assert figure.comm is None and view.widget.comm is None
