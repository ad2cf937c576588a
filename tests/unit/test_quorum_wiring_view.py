"""QuorumView from a recorded frame: who leads, what each controller holds, who fell silent."""

from __future__ import annotations

from kafkalab.metrics import MetricsSnapshot
from kafkalab.widgets.base import HIGH_WATERMARK, IN_SYNC, OFFLINE, OUT_OF_SYNC
from kafkalab.widgets.quorum import LEADER_COLOR, QuorumView, quorum_figure_data

T0 = 1_000.0


def row(t: float, cid: int, role: str, epoch: int, leader: int, hw: int, leo: int, active: bool = False) -> dict:
    return {"time": t, "node": f"controller-{cid}", "controller_id": cid, "role": role, "epoch": epoch,
            "leader": leader, "active": active, "high_watermark": hw, "log_end_offset": leo,
            "voter_end_offsets": {}}


def recorded() -> MetricsSnapshot:
    """controller-1 led epoch 3 and went silent after T0 (killed); 2 won epoch 4; 3 follows."""
    snap = MetricsSnapshot()
    snap.add("quorum", row(T0, 1, "leader", 3, 1, 40, 41, active=True))
    snap.add("quorum", row(T0, 2, "follower", 3, 1, 40, 41))
    snap.add("quorum", row(T0 + 3.0, 2, "leader", 4, 2, 45, 45, active=True))
    snap.add("quorum", row(T0 + 3.0, 3, "candidate", 4, -1, 40, 41))
    snap.add("quorum", row(T0 + 3.1, 3, "follower", 4, 2, 44, 45))
    return snap


def test_quorum_view_shows_the_new_leader_and_the_silent_old_one() -> None:
    snap = recorded()
    data = QuorumView(snap).figure_data()
    bars, hws = data["data"]
    assert bars["x"] == ["controller-1", "controller-2", "controller-3"]
    assert bars["y"] == [41, 45, 45]
    assert bars["marker"]["color"] == [OFFLINE, LEADER_COLOR, IN_SYNC]
    assert hws["y"] == [40, 45, 44] and hws["marker"]["color"] == HIGH_WATERMARK
    assert data["layout"]["title"]["text"] == "Controller quorum: epoch 4, active controller-2"
    assert "(silent)" in bars["text"][0] and "(active)" in bars["text"][1]


def test_an_election_in_progress_has_no_active_controller() -> None:
    frame = MetricsSnapshot({"quorum": [row(T0, 1, "candidate", 5, -1, 9, 9),
                                        row(T0, 2, "unattached", 5, -1, 9, 9)]}).frame("quorum")
    data = quorum_figure_data(frame, now=T0 + 0.5)
    assert data["data"][0]["marker"]["color"] == [OUT_OF_SYNC, OUT_OF_SYNC]
    assert data["layout"]["title"]["text"] == "Controller quorum: no active controller"


def test_no_quorum_rows_says_how_to_get_them() -> None:
    data = quorum_figure_data(MetricsSnapshot().frame("quorum"))
    assert data["data"] == []
    assert "controllers=3" in data["layout"]["annotations"][0]["text"]


def test_a_single_controller_is_drawn_as_the_one_voter_it_is() -> None:
    one = {**row(T0, 0, "leader", 1, 0, 7, 7, active=True), "node": "controller"}
    data = quorum_figure_data(MetricsSnapshot({"quorum": [one]}).frame("quorum"), now=T0 + 0.5)
    assert data["data"][0]["x"] == ["controller"]
    assert data["layout"]["title"]["text"] == "Controller quorum: epoch 1, active controller"
