"""Transactions: where read_committed consumers stop (LSO) against the high watermark."""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as w

from kafkalab.metrics import as_rows, latest_rows

from .base import (
    HIGH_WATERMARK,
    FigureData,
    Source,
    View,
    base_layout,
    current_leaders,
    empty_note,
    plain,
)

LSO_COLOR = "#17becf"


def transaction_figure_data(latest: Any, topic: str | None = None) -> FigureData:
    """Per partition (leader's report): HW and LSO side by side; the gap is open transactions."""
    layout = base_layout("High watermark vs last stable offset", barmode="group",
                         yaxis={"title": {"text": "offset"}})
    leaders = current_leaders(latest)
    if topic is not None:
        leaders = [r for r in leaders if r.get("topic") == topic]
    if not leaders:
        layout["annotations"] = [empty_note("no leader has reported yet")]
        return {"data": [], "layout": layout}
    leaders = sorted(leaders, key=lambda r: (r["topic"], r["partition"]))
    x = [f"{r['topic']}-{r['partition']}" for r in leaders]
    return {"data": [
        {"type": "bar", "name": "high watermark", "x": x,
         "y": plain(r.get("high_watermark") for r in leaders), "marker": {"color": HIGH_WATERMARK}},
        {"type": "bar", "name": "last stable offset", "x": x,
         "y": plain(r.get("last_stable_offset") for r in leaders), "marker": {"color": LSO_COLOR}},
    ], "layout": layout}


def transaction_table_rows(txns: Any) -> list[dict[str, Any]]:
    """The newest state per transactional.id."""
    rows = []
    for txn in latest_rows(as_rows(txns), ["transactional_id"]):
        partitions = txn.get("partitions")
        rows.append({
            "transactional_id": txn["transactional_id"],
            "state": txn["state"],
            "producer_id": txn.get("producer_id"),
            "producer_epoch": txn.get("producer_epoch"),
            "partitions": ", ".join(map(str, partitions)) if isinstance(partitions, list) else "",
        })
    return rows


def transaction_table_html(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<i>no transactional producer has reported yet</i>"
    header = "".join(f"<th>{html.escape(k)}</th>" for k in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row.values())
                   + "</tr>" for row in rows)
    return f"<table><tr>{header}</tr>{body}</table>"


class TransactionView(View):
    """HW vs LSO per partition, and each transactional producer's state."""

    def __init__(self, source: Source, topic: str | None = None) -> None:
        self.topic = topic
        self.table = w.HTML()
        super().__init__(source)
        self.box = w.VBox([self.frame, self.table])

    @property
    def widget(self) -> Any:
        return self.box

    def figure_data(self) -> FigureData:
        return transaction_figure_data(self.source.latest_replica_rows(), self.topic)

    def refresh(self) -> bool:
        changed = super().refresh()
        table = transaction_table_html(transaction_table_rows(self.source.rows("txn")))
        if table != self.table.value:
            self.table.value = table
            changed = True
        return changed
