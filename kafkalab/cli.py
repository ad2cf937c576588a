"""`kafkalab up | demo | bench NAME | dump-log PATH | lab | labs DIR | progress` (and `--version`)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from typing import NoReturn


class _Parser(argparse.ArgumentParser):
    """A user error is one line (`kafkalab up: error: ...`), not the usage block and a traceback."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("kafkalab")
    except PackageNotFoundError:
        return "unknown"


def _broker_count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of brokers") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} brokers: a cluster needs at least 1")
    return n


def _controller_count(text: str) -> int:
    if text not in ("1", "3"):
        raise argparse.ArgumentTypeError(
            f"{text!r} controllers: use 1 (one controller) or 3 (a KRaft quorum that survives one failure)")
    return int(text)


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
        kept = "kept on exit" if args.data_dir else "deleted on exit; --data-dir DIR keeps the data"
        print(f"  data dir          = {cluster.data_dir} ({kept})")
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
    from kafkalab.tools.dump_log import dump_paths

    return dump_paths(args.paths, print_records=not args.no_records)


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


def _sim(args: argparse.Namespace) -> int:
    from kafkalab.sim import runner

    try:
        return runner.main(args.seeds, brokers=args.brokers, controllers=args.controllers, trace=args.trace,
                           scenarios=args.scenario, as_json=args.json, jobs=args.jobs)
    except ValueError as e:
        print(f"kafkalab sim: error: {e}", file=sys.stderr)
        return 2


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


def _bench_name(text: str) -> str:
    from kafkalab.bench import BENCHES

    if text not in BENCHES:
        raise argparse.ArgumentTypeError(f"unknown bench {text!r}; choose one of: {', '.join(BENCHES)}")
    return text


def _bench_catalog() -> str:
    """Every bench with its parameters and defaults (read from the bench functions)."""
    import inspect

    from kafkalab.bench import BENCHES, load

    lines = ["benches, with their parameters (set one with --param KEY=VALUE):"]
    for name in BENCHES:
        params = inspect.signature(load(name)).parameters.values()
        lines.append(f"  {name:<13} " + (", ".join(f"{p.name}={p.default!r}" for p in params) or "(none)"))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # The reader went away (`kafkalab dump-log ... | head`): stop quietly, as a Unix tool does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        return 130


def _main(argv: list[str] | None) -> int:
    from kafkalab.bench import BENCHES
    from kafkalab.errors import KafkaLabError

    parser = _Parser(prog="kafkalab", description="Learn Kafka by running and breaking it.")
    parser.add_argument("--version", action="version", version=f"kafkalab {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("up", help="run a cluster in the foreground")
    p.add_argument("--brokers", type=_broker_count, default=3)
    p.add_argument("--controllers", type=_controller_count, default=1,
                   help="1, or 3 for a KRaft quorum")
    p.add_argument("--profile", choices=["lab", "kafka"], default="lab")
    p.add_argument("--data-dir", default=None)
    p.set_defaults(func=_up)
    p = sub.add_parser("demo", help="the story in a terminal: start, produce, kill the leader, check")
    p.add_argument("--records", type=int, default=5000)
    p.set_defaults(func=_demo)
    p = sub.add_parser("bench", help="measure: " + ", ".join(BENCHES),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", type=_bench_name, metavar="NAME", help=", ".join(BENCHES))
    bench_help = p.format_help
    p.format_help = lambda: bench_help() + "\n" + _bench_catalog()  # type: ignore[method-assign]
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
    p = sub.add_parser("sim", help="the deterministic simulator: seeded runs of the real cores under faults")
    p.add_argument("--seeds", help="A-B (e.g. 1-200), one seed, or a comma list")
    p.add_argument("--brokers", type=_broker_count, default=3)
    p.add_argument("--controllers", type=_controller_count, default=1,
                   help="1: one controller; 3: a Raft quorum of controller voters, crashed, paused and cut "
                        "like brokers (the replication scenario; groups, consumer-groups and transactions "
                        "simulate their coordinators without a controller and ignore it)")
    p.add_argument("--trace", type=int, metavar="SEED", help="run one seed and tell its story")
    p.add_argument("--scenario", action="append", help="only this scenario (repeatable; default: all)")
    p.add_argument("--json", action="store_true", help="print rows and violations as JSON")
    p.add_argument("--jobs", type=int, default=None, help="worker processes (default: 2, or 1 on one core)")
    p.set_defaults(func=_sim)
    p = sub.add_parser("progress", help="your checked exercises: lab, exercise, passed, attempts")
    p.add_argument("--csv", action="store_true", help="CSV for an instructor (with the learner's name)")
    p.set_defaults(func=_progress)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KafkaLabError as e:
        print(f"kafkalab {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
