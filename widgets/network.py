"""The network picture: every process a node, every link healthy, cut or delayed.

`network_figure_data(state)` is pure: `state` is the dict a `ClusterProbe` reads (node names,
process states, the fault table's links) plus what each broker leads, so tests hand-build it.
Cut links are one trace named "cut" (red, dashed; a one-way cut carries an arrowhead toward
the side that no longer hears), delayed links one trace named "delayed" (orange, the ms
written on the link).
"""

from __future__ import annotations

from typing import Any

from .base import EVENT_LINE, FIGURE_WIDTH, IN_SYNC, OFFLINE, OUT_OF_SYNC, FigureData, View
from .plotly_import import go
from .probe import NODE_HELP, ClusterProbe, leaders_by_broker, node_kind
from .replicas import STALE_AFTER_S

CUT = "#d62728"
DELAYED = OUT_OF_SYNC
HEALTHY = "#c7c7c7"
NODE_COLORS = {"up": IN_SYNC, "paused": "#bcbd22", "killed": CUT, "stopped": OFFLINE,
               "fenced": OUT_OF_SYNC, "isolated": "#9467bd", "starting": OUT_OF_SYNC}
NODE_SYMBOLS = {"controller": "square", "broker": "circle", "client": "diamond",
                "client-kafka": "diamond", "load": "triangle-up", "worker": "triangle-down"}
ROWS = {"controller": 2.0, "broker": 1.0, "client": 0.0, "client-kafka": 0.0, "load": 0.0,
        "worker": 0.0}
NETWORK_HEIGHT = 270
ARROW_AT = 0.72  # where along a one-way cut its arrowhead sits (toward the deaf side)


def layout_nodes(names: list[str]) -> dict[str, tuple[float, float]]:
    """Stable positions: controllers on top, brokers in the middle, clients and workers below,
    each row centred, in the order the cluster lists them."""
    rows: dict[float, list[str]] = {}
    for name in names:
        rows.setdefault(ROWS[node_kind(name)], []).append(name)
    width = max((len(r) for r in rows.values()), default=1)
    pos = {}
    for y, members in rows.items():
        offset = (width - len(members)) / 2
        for i, name in enumerate(members):
            pos[name] = (offset + i, y)
    return pos


def isolated_nodes(names: list[str], links: list[dict[str, Any]]) -> set[str]:
    """Nodes cut off (both ways) from every other node."""
    cuts = {(link["src"], link["dst"]) for link in links if link.get("cut")}
    out = set()
    for name in names:
        others = [n for n in names if n != name]
        if others and all((name, o) in cuts and (o, name) in cuts for o in others):
            out.add(name)
    return out


def node_states(state: dict[str, Any]) -> dict[str, str]:
    """Each node's state in one word: up, paused, killed, stopped, fenced or isolated."""
    names = state.get("nodes", [])
    isolated = isolated_nodes(names, state.get("links", []))
    out = {}
    for name in names:
        kind = node_kind(name)
        if kind == "broker":
            s = state.get("brokers", {}).get(int(name.split("-")[1]), "up")
        elif kind == "controller":
            s = state.get("controllers", {}).get(name, "up")
        else:
            s = "up"
        if s == "up" and name in isolated:
            s = "isolated"
        out[name] = s
    return out


def _pairs(links: list[dict[str, Any]], key: str) -> dict[tuple[str, str], set[tuple[str, str]]]:
    """Faulty directed links grouped by unordered pair: {(a, b): {(src, dst), ...}}."""
    pairs: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for link in links:
        if link.get(key):
            a, b = sorted((link["src"], link["dst"]))
            pairs.setdefault((a, b), set()).add((link["src"], link["dst"]))
    return pairs


def _usual_pairs(names: list[str]) -> set[tuple[str, str]]:
    """Who talks to whom: brokers with each other and the controllers, controllers with each
    other, clients and workers with the brokers."""
    pairs = set()
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            ka, kb = node_kind(a), node_kind(b)
            if "broker" in (ka, kb) or ka == kb == "controller":
                pairs.add(tuple(sorted((a, b))))
    return pairs


def _hover(name: str, state: str, active: bool, leads: list[str]) -> str:
    kind = node_kind(name)
    lines = [f"<b>{name}</b>: {state}" + (" (active controller)" if active else "")]
    if kind == "broker":
        lines.append("leads " + ", ".join(leads) if leads else "leads no partition")
    lines.append(NODE_HELP[kind])
    return "<br>".join(lines)


def network_figure_data(state: dict[str, Any], leads: dict[int, list[str]] | None = None,
                        title: str = "Network") -> FigureData:
    """Nodes and links as Plotly figure data (see the module docstring)."""
    names = list(state.get("nodes", []))
    links = list(state.get("links", []))
    leads = leads or {}
    pos = layout_nodes(names)
    for link in links:  # a node only the fault table names (a worker that has gone)
        for n in (link["src"], link["dst"]):
            if n not in pos:
                names.append(n)
                pos = layout_nodes(names)
    states = node_states({**state, "nodes": names})
    cut_pairs, delay_pairs = _pairs(links, "cut"), _pairs(links, "delay_ms")
    delays = {(link["src"], link["dst"]): int(link["delay_ms"]) for link in links
              if link.get("delay_ms")}

    healthy: dict[str, list[Any]] = {"x": [], "y": []}
    for a, b in sorted(_usual_pairs(names) - set(cut_pairs) - set(delay_pairs)):
        healthy["x"] += [pos[a][0], pos[b][0], None]
        healthy["y"] += [pos[a][1], pos[b][1], None]

    cut: dict[str, list[Any]] = {"x": [], "y": [], "text": [], "size": []}
    for (a, b), directed in sorted(cut_pairs.items()):
        (xa, ya), (xb, yb) = pos[a], pos[b]
        if len(directed) == 2:
            text = f"{a} ↔ {b}: cut both ways"
            cut["x"] += [xa, xb, None]
            cut["y"] += [ya, yb, None]
            cut["text"] += [text, text, None]
            cut["size"] += [0, 0, 0]
        else:
            (src, dst), = directed
            (xs, ys), (xd, yd) = pos[src], pos[dst]
            text = f"{src} → {dst}: cut one way ({dst} hears nothing from {src})"
            xm, ym = xs + ARROW_AT * (xd - xs), ys + ARROW_AT * (yd - ys)
            cut["x"] += [xs, xm, xd, None]
            cut["y"] += [ys, ym, yd, None]
            cut["text"] += [text, text, text, None]
            cut["size"] += [0, 16, 0, 0]
    delayed: dict[str, list[Any]] = {"x": [], "y": [], "text": [], "hover": []}
    for (a, b), directed in sorted(delay_pairs.items()):
        (xa, ya), (xb, yb) = pos[a], pos[b]
        ms = sorted({delays[d] for d in directed})
        words = " / ".join(f"{m} ms" for m in ms)
        way = "both ways" if len(directed) == 2 else "one way: " + "{} → {}".format(*next(iter(directed)))
        hover = f"{a} ↔ {b}: delayed {words} ({way})"
        delayed["x"] += [xa, (xa + xb) / 2, xb, None]
        delayed["y"] += [ya, (ya + yb) / 2, yb, None]
        delayed["text"] += ["", words, "", ""]
        delayed["hover"] += [hover, hover, hover, None]

    active = state.get("active_controller")
    node_leads = {n: leads.get(int(n.split("-")[1]), []) if node_kind(n) == "broker" else []
                  for n in names}
    labels = []
    for n in names:
        label = n + (" ★" if n == active and node_kind(n) == "controller" else "")
        if states[n] != "up":
            label += f"<br><b>{states[n]}</b>"
        labels.append(label)
    traces = [
        {"type": "scatter", "mode": "lines", "name": "links", "x": healthy["x"],
         "y": healthy["y"], "line": {"color": HEALTHY, "width": 1}, "hoverinfo": "skip",
         "showlegend": False},
        {"type": "scatter", "mode": "lines+markers", "name": "cut", "x": cut["x"],
         "y": cut["y"], "line": {"color": CUT, "width": 3, "dash": "dash"},
         "marker": {"symbol": "arrow", "angleref": "previous", "size": cut["size"],
                    "color": CUT},
         "text": cut["text"], "hovertemplate": "%{text}<extra></extra>", "showlegend": False},
        {"type": "scatter", "mode": "lines+text", "name": "delayed", "x": delayed["x"],
         "y": delayed["y"], "line": {"color": DELAYED, "width": 3}, "text": delayed["text"],
         "textposition": "top center", "textfont": {"color": DELAYED, "size": 11},
         "customdata": delayed["hover"], "hovertemplate": "%{customdata}<extra></extra>",
         "showlegend": False},
        {"type": "scatter", "mode": "markers+text", "name": "nodes",
         "x": [pos[n][0] for n in names], "y": [pos[n][1] for n in names],
         "text": labels, "textposition": "bottom center", "textfont": {"size": 11},
         "marker": {"size": [22 if n == active else 18 for n in names],
                    "color": [NODE_COLORS.get(states[n], OFFLINE) for n in names],
                    "symbol": [NODE_SYMBOLS[node_kind(n)] for n in names],
                    "line": {"width": [3 if n == active else 1 for n in names],
                             "color": "#222222"}},
         "customdata": [_hover(n, states[n], n == active, node_leads[n]) for n in names],
         "hovertemplate": "%{customdata}<extra></extra>", "showlegend": False},
    ]
    width = max((x for x, _ in pos.values()), default=0)
    key = "  ".join(f"<span style='color:{NODE_COLORS[s]}'>●</span> {s}"
                    for s in ("up", "paused", "killed", "fenced", "isolated"))
    key += (f"   <span style='color:{CUT}'>- -</span> cut"
            f"  <span style='color:{DELAYED}'>—</span> delayed  ★ active controller")
    layout = {
        "title": {"text": title, "x": 0.01, "y": 0.98, "font": {"size": 14}},
        "height": NETWORK_HEIGHT,
        "margin": {"l": 10, "r": 10, "t": 30, "b": 28},
        "xaxis": {"visible": False, "range": [-0.6, width + 0.6], "fixedrange": True},
        "yaxis": {"visible": False, "range": [-0.55, 2.35], "fixedrange": True},
        "showlegend": False,
        "plot_bgcolor": "white",
        "shapes": [],
        "annotations": [{"text": key, "xref": "paper", "yref": "paper", "x": 0, "y": 0,
                         "yanchor": "top", "xanchor": "left", "yshift": -6,
                         "showarrow": False, "font": {"size": 10, "color": EVENT_LINE}}],
    }
    if state.get("closed"):
        layout["annotations"].append({"text": "cluster closed", "xref": "paper", "yref": "paper",
                                      "x": 0.5, "y": 0.5, "showarrow": False,
                                      "font": {"size": 16, "color": OFFLINE}})
    return {"data": traces, "layout": layout}


def network_figure(cluster: Any, stale_after_s: float = STALE_AFTER_S) -> go.Figure:
    """The network picture of this moment as a static figure, without a live widget (cheap
    enough to take inside a workload's loop)."""
    probe = ClusterProbe(cluster)
    state = probe.read()
    metrics = getattr(cluster, "metrics", None)
    leads = ({} if metrics is None or state["closed"] else leaders_by_broker(
        metrics.latest_replica_rows(), metrics.now(), stale_after_s, state["brokers"]))
    data = network_figure_data(state, leads)
    return go.Figure(data=data["data"], layout={"width": FIGURE_WIDTH, **data["layout"]})


class NetworkView(View):
    """Every process and every link of a cluster: `NetworkView(cluster)`.

    `source` is a Cluster (or a ClusterProbe over one); leadership comes from its metrics.
    """

    def __init__(self, source: Any, stale_after_s: float = STALE_AFTER_S,
                 metrics: Any = None) -> None:
        self.probe = source if isinstance(source, ClusterProbe) else ClusterProbe(source)
        self.stale_after_s = stale_after_s
        super().__init__(metrics if metrics is not None
                         else getattr(self.probe.cluster, "metrics", None))

    def figure_data(self) -> FigureData:
        state = self.probe.read()
        leads: dict[int, list[str]] = {}
        metrics = self.source
        if metrics is not None and not state["closed"]:
            leads = leaders_by_broker(metrics.latest_replica_rows(), metrics.now(),
                                      self.stale_after_s, state["brokers"])
        return network_figure_data(state, leads)

