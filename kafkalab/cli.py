"""`kafkalab up | demo | bench NAME | dump-log PATH | lab | labs DIR | progress`."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading


def _up(args: argparse.Namespace) -> int:
    from kafkalab import Cluster

    stop = threading.Event()
    with Cluster(brokers=args.brokers, controllers=args.controllers, profile=args.profile,
                 data_dir=args.data_dir) as cluster:
        # Ctrl-C and SIGTERM only set the event, so they can never land between two lines
        # and skip the clean shutdown.
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        print(f"kafkalab: {args.brokers} brokers and {args.controllers} controller(s) up ({args.profile} profile)")
        print(f"  bootstrap.servers = {cluster.bootstrap_servers}")
        print(f"  data dir          = {cluster.data_dir}")
        print("  stop with Ctrl-C", flush=True)
        while not stop.wait(0.5):
            pass
        print("kafkalab: shutting down", flush=True)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from kafkalab.demo import run_demo

    return run_demo(records=args.records)


def _bench(args: argparse.Namespace) -> int:
    from kafkalab.bench import load, table

    kwargs = {}
    for item in args.param or []:
        key, _, value = item.partition("=")
        kwargs[key.replace("-", "_")] = json.loads(value) if value[:1].isdigit() or value in ("true", "false") else value
    if args.client:
        kwargs["client"] = args.client
    if args.controller:
        kwargs["controller"] = True
    rows = load(args.name)(**kwargs)
    print(json.dumps(rows, indent=2) if args.json else table(rows))
    return 0


def _dump_log(args: argparse.Namespace) -> int:
    from kafkalab.tools.dump_log import dump_log

    for path in args.paths:
        if not os.path.exists(path):
            print(f"kafkalab dump-log: no such file {path!r}", file=sys.stderr)
            return 2
        print(f"Dumping {path}")
        dump_log(path, print_records=not args.no_records)
    return 0


def _lab(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kafkalab.classroom.kit import open_lab

    return open_lab(Path(args.dir), args.jupyter_args)


def _labs(args: argparse.Namespace) -> int:
    from pathlib import Path

    from kafkalab.classroom.kit import write_labs

    result = write_labs(Path(args.dir), force=args.force)
    print(f"kafkalab: wrote {len(result.written)} labs and their checkers into {args.dir}")
    if result.kept:
        print(f"  kept {len(result.kept)} you already have (your work): "
              f"{', '.join(p.name for p in result.kept)}; --force overwrites them")
    return 0


def _progress(args: argparse.Namespace) -> int:
    from kafkalab.classroom import progress

    path = progress.progress_path()
    if path is None:
        print(f"kafkalab progress: recording is off ({progress.ENV}=off)", file=sys.stderr)
        return 2
    try:
        rows = progress.rows(progress.load(path), progress.learner_name())
    except ValueError as e:
        print(f"kafkalab progress: {e}", file=sys.stderr)
        return 2
    print(progress.to_csv(rows) if args.csv else progress.table(rows), end="" if args.csv else "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kafkalab", description="Learn Kafka by running and breaking it.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("up", help="run a cluster in the foreground")
    p.add_argument("--brokers", type=int, default=3)
    p.add_argument("--controllers", type=int, default=1, help="3 for a KRaft quorum")
    p.add_argument("--profile", choices=["lab", "kafka"], default="lab")
    p.add_argument("--data-dir", default=None)
    p.set_defaults(func=_up)
    p = sub.add_parser("demo", help="the story in a terminal: start, produce, kill the leader, check")
    p.add_argument("--records", type=int, default=5000)
    p.set_defaults(func=_demo)
    p = sub.add_parser("bench", help="measure: storage, startup, failover, ...")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="print rows as JSON")
    p.add_argument("--param", action="append", help="KEY=VALUE passed to the bench")
    p.add_argument("--client", help="produce: also measure this Kafka client (kafka-python, confluent-kafka)")
    p.add_argument("--controller", action="store_true", help="failover: the controller quorum's failover")
    p.set_defaults(func=_bench)
    p = sub.add_parser("dump-log", help="print a segment's batches like Kafka's DumpLogSegments")
    p.add_argument("paths", nargs="+")
    p.add_argument("--no-records", action="store_true")
    p.set_defaults(func=_dump_log)
    p = sub.add_parser("lab", help="open your copies of the labs in JupyterLab (written if missing)")
    p.add_argument("--dir", default="kafkalab-labs", help="where your copies live (default: ./kafkalab-labs)")
    p.add_argument("jupyter_args", nargs=argparse.REMAINDER, help="after --: passed to jupyter lab")
    p.set_defaults(func=_lab)
    p = sub.add_parser("labs", help="write learner copies of the labs (no saved outputs) into DIR")
    p.add_argument("dir")
    p.add_argument("--force", action="store_true", help="overwrite notebooks already there")
    p.set_defaults(func=_labs)
    p = sub.add_parser("progress", help="your checked exercises: lab, exercise, passed, attempts")
    p.add_argument("--csv", action="store_true", help="CSV for an instructor (with the learner's name)")
    p.set_defaults(func=_progress)
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
