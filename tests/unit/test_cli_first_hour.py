"""The command line answers a user's mistakes in one line, and dump-log behaves like a Unix tool."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kafkalab.cli import main
from kafkalab.records import encode_batch
from kafkalab.storage import Log


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def partition_dir(tmp_path):
    log = Log(str(tmp_path / "t-0"), {}, now_ms=0)
    for i in range(400):
        log.append(encode_batch([(b"k", b"value-%d" % i, [], 5)]), now_ms=0)
    log.close()
    return tmp_path / "t-0"


def test_version(capsys):
    code, out, _ = _run(capsys, "--version")
    assert code == 0 and out.startswith("kafkalab ")


@pytest.mark.parametrize(("argv", "message"), [
    (("up", "--brokers", "0"), "kafkalab up: error: argument --brokers: 0 brokers: a cluster needs at least 1"),
    (("up", "--controllers", "2"), "kafkalab up: error: argument --controllers: '2' controllers: use 1"),
    (("bench", "nope"), "kafkalab bench: error: argument NAME: unknown bench 'nope'; choose one of: storage,"),
])
def test_user_errors_are_one_line(capsys, argv, message):
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith(message) and err.count("\n") == 1, err


def test_bench_help_lists_every_bench_and_its_parameters(capsys):
    from kafkalab.bench import BENCHES

    code, out, _ = _run(capsys, "bench", "--help")
    assert code == 0
    for name in BENCHES:
        assert f"\n  {name} " in out
    assert "records=200000" in out and "controller=False" in out and "--param KEY=VALUE" in out


def test_dump_log_says_dumping_once_per_file(capsys, partition_dir):
    code, out, _ = _run(capsys, "dump-log", str(partition_dir / "00000000000000000000.log"))
    assert code == 0 and out.count("Dumping ") == 1


def test_dump_log_of_a_directory_dumps_every_segment_file(capsys, partition_dir):
    code, out, _ = _run(capsys, "dump-log", "--no-records", str(partition_dir))
    dumped = [line.rsplit("/", 1)[1] for line in out.splitlines() if line.startswith("Dumping ")]
    assert code == 0
    assert dumped == ["00000000000000000000.log", "00000000000000000000.index", "00000000000000000000.timeindex"]


def test_dump_log_refuses_what_is_not_a_segment_in_one_line(capsys, partition_dir, tmp_path):
    (tmp_path / "notes.txt").write_text("hello\n")
    (tmp_path / "empty").mkdir()
    for path, message in [(tmp_path / "notes.txt", "not a segment file"),
                          (partition_dir / "leader-epoch-checkpoint", "not a segment file"),
                          (tmp_path / "empty", "is a directory without segment files"),
                          (tmp_path / "missing.log", "no such file")]:
        code, _, err = _run(capsys, "dump-log", str(path))
        assert code == 2 and message in err and err.count("\n") == 1, err


def test_dump_log_says_an_index_is_empty(capsys, tmp_path):
    (tmp_path / "00000000000000000000.index").write_bytes(b"")
    code, out, _ = _run(capsys, "dump-log", str(tmp_path / "00000000000000000000.index"))
    assert code == 0 and "(no entries: the index is empty)" in out


def test_dump_log_into_a_closed_pipe_prints_no_traceback(partition_dir):
    proc = subprocess.Popen([sys.executable, "-m", "kafkalab.cli", "dump-log",
                             str(partition_dir / "00000000000000000000.log")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()  # as `| head -1` does
    err = proc.stderr.read().decode()
    proc.wait(30)
    assert "Traceback" not in err and "BrokenPipe" not in err, err
