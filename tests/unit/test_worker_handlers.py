"""How a consumer worker's handler crosses to its process (workloads/consumers.py): as its code
when it needs nothing of the notebook, so the worker never imports dill; with dill otherwise."""

from __future__ import annotations

import builtins
import json
import pickle
import subprocess
import sys
import time

import pytest

from kafkalab.workloads.consumers import pack_handler, unpack_handler

LIMIT = 3


def slow(message, pause=0.0, *, scale=2):  # as the labs write one: imports inside
    import time

    time.sleep(pause)
    return [scale * len(str(i)) for i in range(len(message))]


def shadows_a_builtin(message):
    return len(message)


def uses_a_notebook_module(message):
    return time.monotonic() > 0


def uses_a_notebook_value(message):
    return [LIMIT for _ in message]


def test_a_self_contained_handler_crosses_as_code_and_runs_without_dill():
    kind, blob = pack_handler(slow)
    assert kind == "code"
    code = ("import json, pickle, sys\nfrom kafkalab.workloads.consumers import unpack_handler\n"
            "fn = unpack_handler(pickle.loads(sys.stdin.buffer.read()))\n"
            "print(json.dumps([fn(b'x' * 11), fn(b'ab', 0.0, scale=5), fn.__name__, 'dill' in sys.modules]))\n")
    out = subprocess.run([sys.executable, "-c", code], input=pickle.dumps((kind, blob)),
                         capture_output=True, check=True).stdout
    assert json.loads(out) == [slow(b"x" * 11), slow(b"ab", 0.0, scale=5), "slow", False]
    assert slow(b"x" * 11)[-1] == 4  # defaults crossed too: 2 * len("10")


def test_a_handler_that_needs_the_notebook_crosses_with_dill(monkeypatch):
    limit = 4
    closure = lambda m: m * limit  # noqa: E731
    assert pack_handler(uses_a_notebook_module)[0] == "dill"
    assert pack_handler(uses_a_notebook_value)[0] == "dill"  # looked up inside a comprehension
    assert pack_handler(closure)[0] == "dill"
    assert unpack_handler(pack_handler(closure))(b"a") == b"aaaa"
    assert pack_handler(lambda m, k=LIMIT: m * k)[0] == "code"  # a default is a value, not a lookup
    assert pack_handler(shadows_a_builtin)[0] == "code"
    monkeypatch.setitem(globals(), "len", lambda x: 0)  # now the notebook has its own len()
    assert pack_handler(shadows_a_builtin)[0] == "dill"


def test_a_name_a_notebook_adds_to_builtins_is_not_one_a_worker_has(monkeypatch):
    def shows(message):
        return display(message)  # noqa: F821 - IPython puts display() into builtins

    monkeypatch.setattr(builtins, "display", lambda m: m, raising=False)
    assert pack_handler(shows)[0] == "dill"


@pytest.mark.parametrize("handler", [print, len])
def test_a_handler_that_is_not_a_python_function_crosses_with_dill(handler):
    assert pack_handler(handler)[0] == "dill"
