"""What a cluster process imports: what it serves and no more (a broker is one per learner's
broker, so every module it loads is paid for several times over)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

# Run as a lab process runs it: BOOT's skip_import_extras() first (hypothesis blocked, crc32c's
# extension alone, kio's writers without asyncio), and a cluster role's ssl block (roles.py).
CLOSURE = ("import json, sys\nsys.modules['ssl'] = None\nimport kafkalab.process\n"
           "kafkalab.process.skip_import_extras()\nimport {module}\n"
           "print(json.dumps(sorted(m for m, v in sys.modules.items() if v is not None)))\n")

# None of these is any use to a broker or a controller: the lab client (a broker once imported
# all of it for the consumer protocol's codec), the notebook side, and the compression codecs,
# which load with the first compressed batch; and what dependencies import for nothing a lab
# process uses (process.skip_import_extras): asyncio (kio's writers, for a type alias),
# importlib.metadata with email and zipfile, and argparse (crc32c's package); subprocess and queue,
# which only the parent's side of kafkalab.process uses; shutil (bz2, lzma) and difflib, which a
# broker needs only to delete a partition, report disk usage or word a config error.
NEVER = ("kafkalab.client", "kafkalab.cluster", "kafkalab.widgets", "kafkalab.metrics", "pandas", "numpy",
         "plotly", "cramjam", "lz4", "zstandard", "multiprocess", "multiprocessing", "dill",
         "asyncio", "importlib.metadata", "email", "zipfile", "argparse", "hypothesis", "ssl", "subprocess",
         "queue", "shutil", "bz2", "lzma", "difflib")

# kio schema versions of apis (headers aside) a process may load before it serves anything:
# the broker's heartbeat, producer-id and Metadata schemas, the controller's LeaderChange and
# Metadata ones. Everything else loads per api on first use (there were 21 at import).
AT_IMPORT_MAX = 4


def _closure(module: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", CLOSURE.format(module=module)],
                         capture_output=True, text=True, check=True).stdout
    return set(json.loads(out))


def _api_schemas(modules: set[str]) -> set[str]:
    return {m for m in modules if re.fullmatch(r"kio\.schema\.\w+\.v\d+", m)
            and not m.startswith(("kio.schema.request_header.", "kio.schema.response_header."))}


@pytest.mark.parametrize("module", ["kafkalab.broker.server", "kafkalab.controller.server"])
def test_a_cluster_process_imports_neither_the_client_nor_the_notebook_side(module):
    modules = _closure(module)
    assert module in modules  # the closure is real, not an empty list
    pulled = sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in NEVER))
    assert pulled == [], f"{module} imports {pulled}"
    schemas = _api_schemas(modules)
    assert "kio.schema.metadata.v12" in schemas  # what is counted is there to count
    assert len(schemas) <= AT_IMPORT_MAX, f"{module} loads {sorted(schemas)} at import"


# A worker is a client: it may import the lab client, never the notebook side or the extras, nor
# what only the notebook's side of a worker uses (tempfile, for the shared state's file) or the
# rest of the workloads package (the checker, schedules, histories).
WORKER_NEVER = (*(n for n in NEVER if n not in ("kafkalab.client", "cramjam", "lz4", "zstandard", "ssl")),
                "tempfile", "kafkalab.workloads.checker", "kafkalab.workloads.history",
                "kafkalab.workloads.schedule", "kafkalab.workloads.runner")


@pytest.mark.parametrize("module", ["kafkalab.load_worker", "kafkalab.workloads.consumers",
                                    "kafkalab.workloads.eos"])
def test_a_worker_module_imports_neither_the_notebook_side_nor_the_extras(module):
    # The module only: its main imports the lab client when it runs (test_spawn checks a live one).
    code = CLOSURE.replace("sys.modules['ssl'] = None\n", "").format(module=module)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    modules = set(json.loads(out))
    assert {module, "kio.serial.writers", "crc32c"} <= modules
    pulled = sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in WORKER_NEVER))
    assert pulled == [], f"{module} imports {pulled}"


def test_the_lab_client_in_a_worker_imports_no_asyncio():
    # pyzmq's monitor helpers (the client decodes socket events with them) import asyncio for an
    # annotation; a worker imports them with a stand-in (process.skip_import_extras).
    modules = _closure("kafkalab.client.consumer, kafkalab.client.producer, kafkalab.client.context")
    assert {"kafkalab.client.network", "zmq.utils.monitor"} <= modules
    assert sorted(m for m in modules if m.split(".")[0] == "asyncio" or m == "zmq.asyncio") == []


def test_skipped_extras_leave_crc32c_and_asyncio_working():
    code = ("import sys, kafkalab.process as p\np.skip_import_extras()\n"
            "import crc32c, kio.serial.writers as w\n"
            "print('importlib.metadata' in sys.modules, 'asyncio' in sys.modules)\n"
            "print(hex(crc32c.crc32c(b'123456789')), hex(crc32c.crc32c(b'56789', 0xf63af4ee)))\n"
            "import asyncio\nprint(hasattr(asyncio, 'run'), asyncio.StreamWriter.__module__)\n"
            # a socket's events still decode, and the real zmq.asyncio imports when asked for
            "import zmq, zmq.asyncio\nfrom zmq.utils.monitor import recv_monitor_message\n"
            "s = zmq.Context.instance().socket(zmq.DEALER)\nm = s.get_monitor_socket()\n"
            "s.connect('tcp://127.0.0.1:1')\nm.poll(5000)\n"
            "print(recv_monitor_message(m)['endpoint'], zmq.asyncio.Socket.__module__)\n"
            "s.close(0)\nm.close(0)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    # RFC 3720's check value for "123456789", whole and continued from the crc of "1234".
    assert out.splitlines() == ["False False", "0xe3069283 0xe3069283", "True asyncio.streams",
                                "b'tcp://127.0.0.1:1' zmq.asyncio"]


def test_kafkalab_client_loads_its_names_on_first_use():
    code = ("import sys, kafkalab.client as c, kafkalab.client.assignors\n"
            "print('kafkalab.client.producer' in sys.modules, 'kafkalab.client.consumer' in sys.modules)\n"
            "from kafkalab.client import Producer, TopicPartition, OFFSET_END, KafkaError\n"
            "print(Producer.__module__, TopicPartition.__module__, OFFSET_END, KafkaError.__module__)\n"
            "print(all(getattr(c, n) is not None for n in c.__all__))\n"
            "try:\n    c.Nope\nexcept AttributeError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [
        "False False",
        "kafkalab.client.producer kafkalab.client.message -1 kafkalab.protocol.errors",
        "True",
        "module 'kafkalab.client' has no attribute 'Nope'",
    ]


def test_lazy_schema_imports_its_api_on_first_use_and_then_is_kios_module():
    code = ("import sys\nsys.modules['hypothesis'] = None\n"
            "from kafkalab.protocol.apis import lazy_schema, request_class\n"
            "m = lazy_schema('kio.schema.describe_acls.v3.request')\n"
            "print('kio.schema.describe_acls.v3.request' in sys.modules)\n"
            "cls = m.DescribeAclsRequest\n"
            "print('kio.schema.describe_acls.v3.request' in sys.modules, cls is request_class(29, 3),\n"
            "      type(m) is type(sys), m.DescribeAclsRequest is cls)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["False", "True True True True"]
    from kafkalab.protocol.apis import lazy_schema

    with pytest.raises(ValueError, match="kio schema module"):
        lazy_schema("os.path")


def test_the_broker_reads_the_consumer_protocol_bytes_the_client_writes():
    from kafkalab.client.assignors import Subscription, encode_assignment, encode_subscription
    from kafkalab.protocol import consumer_protocol as cp

    sub = Subscription(["b", "a"], [("a", 1), ("a", 0), ("b", 2)], generation=4, user_data=b"u")
    assert cp.decode_subscription(encode_subscription(sub)) == Subscription(
        ["a", "b"], [("a", 0), ("a", 1), ("b", 2)], 4, b"u")
    assert cp.decode_assignment(encode_assignment([("t", 1), ("s", 0), ("t", 0)])) == [("s", 0), ("t", 0), ("t", 1)]
    assert cp.decode_assignment(b"") == []
