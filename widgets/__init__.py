"""Live views (Plotly FigureWidgets) and controls (ipywidgets) over a kafkalab cluster.

Everything reads a metrics source: the live `cluster.metrics` collector or a saved
`kafkalab.metrics.MetricsSnapshot`.
"""

from .controls import BrokerControls, GroupControls, LoadControls, NetworkControls
from .dashboard import Dashboard
from .network import NetworkView, network_figure
from .quorum import QuorumView
from .rates import LagView, ThroughputView
from .replicas import ReplicaView, SegmentView
from .share_groups import ShareGroupView
from .timelines import IsrTimeline, RebalanceTimeline
from .transactions import TransactionView

__all__ = [
    "BrokerControls",
    "Dashboard",
    "GroupControls",
    "IsrTimeline",
    "LagView",
    "LoadControls",
    "NetworkControls",
    "NetworkView",
    "QuorumView",
    "RebalanceTimeline",
    "ReplicaView",
    "SegmentView",
    "ShareGroupView",
    "ThroughputView",
    "TransactionView",
    "network_figure",
]
