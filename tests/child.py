"""Run crash-prone native code (llama.cpp decoding, libmtmd's image encoder) in a child process.

A segfault inside a native library kills the process it happens in; in the pytest process that
is the whole test run. ``run_in_child(fn, *args)`` runs ``fn`` in a fresh interpreter
(multiprocessing "spawn": no forked OpenMP/torch thread state) and returns its result; an
exception in the child is raised again here, and a child killed by a signal fails the test
with the signal's name and what was running.
"""

from __future__ import annotations

import multiprocessing as mp
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from segzero_edge.smoke import describe_exit

T = TypeVar("T")
DEFAULT_TIMEOUT_S = 900


class ChildError(RuntimeError):
    """An exception raised in the child; the message carries the child's traceback."""


def _child_main(conn: Any, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    try:
        payload = (True, fn(*args, **kwargs))
    except BaseException as e:  # reported to the parent, which raises it again
        payload = (False, (e, traceback.format_exc()))
    try:
        conn.send(payload)
    except Exception as e:  # an unpicklable result or exception: send its text instead
        conn.send((False, (None, f"{type(e).__name__} sending the result: {e}")))
    conn.close()


def run_in_child(
    fn: Callable[..., T], *args: Any, timeout_s: float = DEFAULT_TIMEOUT_S, **kwargs: Any
) -> T:
    """``fn(*args, **kwargs)`` in a spawned child process; its return value (must pickle).

    Fails the test (``pytest.fail``) when the child dies by a signal or exits without a
    result, naming ``fn`` and the signal; exceptions raised by ``fn`` propagate.
    """
    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_main, args=(send, fn, args, kwargs), daemon=True)
    proc.start()
    send.close()
    what = getattr(fn, "__qualname__", repr(fn))
    payload = None
    try:
        if recv.poll(timeout_s):
            payload = recv.recv()
    except EOFError:  # the child ended without sending anything
        payload = None
    finally:
        recv.close()
    proc.join(timeout=60 if payload is not None else 5)
    if proc.exitcode is None:
        proc.kill()
        proc.join()
        if payload is None:
            pytest.fail(f"{what} did not finish within {timeout_s:.0f} s in a child process")
    code = proc.exitcode
    if code != 0:
        pytest.fail(
            f"{what} crashed: the child process running it was {describe_exit(code)}"
            + (" after returning" if payload is not None else "")
            + " - a native crash (llama.cpp / ggml / libmtmd?), reported as a test failure "
            "instead of killing the test run"
        )
    if payload is None:
        pytest.fail(f"{what}: the child process exited without a result")
    ok, value = payload
    if ok:
        return value  # type: ignore[no-any-return]
    exc, text = value
    if isinstance(exc, BaseException):  # e.g. an AssertionError, or pytest.skip in the child
        raise exc from ChildError(f"in the child process:\n{text}")
    raise ChildError(f"{what} failed in the child process:\n{text}")
