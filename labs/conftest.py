"""nbval runs every lab; they start real clusters, so they count as slow integration tests
(`pytest -m "not slow"` skips them).

Each lab must also fit Binder: its kernel plus its cluster stay under 1 GB of RSS. A thread
samples the memory of every process this pytest started (the kernel and, below it, the
cluster) while a notebook runs; the notebook's last cell fails if the peak passed the limit,
and the summary lists each lab's peak and what made it (each process's MB at that moment,
named as `ps` names it: kafkalab-broker-1, the kernel ...). With KAFKALAB_LAB_PEAKS set to a
file name, the peaks are also merged into that JSON file ({lab file: MB}), where
`kafkalab bench footprint` reads them.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time

import pytest

LIMIT_MB = 1024
_peaks: dict[str, float] = {}


def pytest_configure(config: pytest.Config) -> None:
    # The labs' check cells record a learner's progress; under test it goes to a throwaway file
    # (kernels inherit this environment), never to the developer's own progress.
    if "KAFKALAB_PROGRESS" not in os.environ:
        os.environ["KAFKALAB_PROGRESS"] = os.path.join(
            tempfile.mkdtemp(prefix="kafkalab-progress-"), "progress.json")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)
            item.add_marker(pytest.mark.integration)


def _process_name(pid: int) -> str:
    """A lab process's own name (BOOT's argv[3], "kafkalab-broker-1"), else its program's."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().rstrip(b"\0").split(b"\0")
    except OSError:
        return "?"
    if len(argv) > 3 and argv[1] == b"-c" and argv[3].startswith(b"kafkalab-"):
        return argv[3].decode(errors="replace")
    if len(argv) > 2 and argv[1] == b"-m":
        return argv[2].decode(errors="replace")
    return os.path.basename(argv[0].decode(errors="replace"))


def _descendants_rss_mb(root: int) -> dict[int, float]:
    """pid -> MB of RSS, for every live process below root."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        children.setdefault(ppid, []).append(int(name))
    rss, stack = {}, list(children.get(root, []))
    while stack:
        pid = stack.pop()
        stack += children.get(pid, [])
        try:
            with open(f"/proc/{pid}/statm") as f:
                rss[pid] = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except (OSError, ValueError, IndexError):
            continue
    return rss


class _Sampler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="lab-rss-sampler", daemon=True)
        self.peak = 0.0
        self.at_peak: list[tuple[str, float]] = []  # (process name, MB), largest first
        self.stop = threading.Event()

    def run(self) -> None:
        me = os.getpid()
        while not self.stop.wait(0.25):
            rss = _descendants_rss_mb(me)
            total = sum(rss.values())
            if total > self.peak:
                self.peak = total
                self.at_peak = sorted(((_process_name(pid), mb) for pid, mb in rss.items()),
                                      key=lambda p: -p[1])


_sampler: _Sampler | None = None
_at_peak: dict[str, list[tuple[str, float]]] = {}


def pytest_runtest_setup(item: pytest.Item) -> None:
    global _sampler
    if item.path.suffix == ".ipynb" and os.path.isdir("/proc") and (_sampler is None or item.path.name not in _peaks):
        if _sampler is not None:
            _sampler.stop.set()
        _sampler = _Sampler()
        _sampler.start()
        _peaks[item.path.name] = 0.0


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    global _sampler
    if item.path.suffix != ".ipynb" or _sampler is None:
        return
    if _sampler.peak > _peaks.get(item.path.name, 0.0):
        _peaks[item.path.name] = _sampler.peak
        _at_peak[item.path.name] = _sampler.at_peak
    if nextitem is not None and nextitem.path == item.path:
        return
    _sampler.stop.set()
    _sampler = None
    time.sleep(0)  # let the sampler see its stop flag
    peak = _peaks[item.path.name]
    _save_peak(item.path.name, peak)
    if peak > LIMIT_MB:
        raise AssertionError(f"{item.path.name}: its kernel and cluster peaked at {peak:.0f} MB RSS, over the "
                             f"{LIMIT_MB} MB a Binder session allows: use fewer brokers or less data")


def _save_peak(lab: str, mb: float) -> None:
    path = os.environ.get("KAFKALAB_LAB_PEAKS")
    if not path:
        return
    try:
        with open(path) as f:
            peaks = json.load(f)
    except (OSError, ValueError):
        peaks = {}
    peaks[lab] = round(mb, 1)
    with open(path + ".tmp", "w") as f:
        json.dump(dict(sorted(peaks.items())), f, indent=1)
    os.replace(path + ".tmp", path)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _peaks:
        terminalreporter.write_line("lab peak RSS (kernel + cluster): " + ", ".join(
            f"{name.split('_')[0]} {mb:.0f} MB" for name, mb in sorted(_peaks.items())))
        for name, parts in sorted(_at_peak.items()):
            terminalreporter.write_line(f"  {name.split('_')[0]} at its peak: " + ", ".join(
                f"{proc} {mb:.0f}" for proc, mb in parts))
