"""The cluster a notebook holds: `Cluster` (a facade over this package's parts) and `wait_until`.

topology      brokers, controllers, their node names, ports and endpoints
supervisor    the processes: start in a role, state, kill/stop/pause/resume, end all
admin_client  requests to the active controller (failover) or to one broker
admin         Kafka's admin APIs on topics, configs and records
faults        the fault table: cuts, delays, partitions, published and awaited
describe      the describe_* frames (the only pandas of the cluster)
clients       the notebook's Producer/Consumer/ShareConsumer
load          load-producer worker processes
events        the cluster's own events and states, as metric rows
data_dirs, open_clusters, waiting: housekeeping
"""

from kafkalab.cluster.data_dirs import OWNER_FILE, remove_orphaned_data_dirs
from kafkalab.cluster.facade import Cluster
from kafkalab.cluster.waiting import wait_until

__all__ = ["OWNER_FILE", "Cluster", "remove_orphaned_data_dirs", "wait_until"]
