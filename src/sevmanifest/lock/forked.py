"""Worker processes for ``lock.batch``: one forked child per chunk, its result sent back
through a pipe.

Why not ``concurrent.futures.ProcessPoolExecutor``: importing it (with ``multiprocessing``,
``socket``, ``logging`` and ``subprocess``) cost ~25 ms of a cold ``sevm lock`` before the
first worker could start, more than the workers' own start; and it pickles every chunk's
arguments, which a forked child has in its memory already.  What the pool did for sevm is
kept here: results in the parent's hands with the child's exception if it raised, a child
killed by a signal reported as such, and every child stopped at once when the parent is
interrupted.

A child computes and never writes a file (the parent writes every output), ignores Ctrl-C
(the parent's to handle) and ends with ``os._exit``, so it neither runs the parent's exit
handlers nor flushes a copy of the parent's buffered output.  Its result is pickled: the
bytes come from a fork of this very program through a pipe only the two hold, and are never
stored (the compiled-manifest cache, which may come from elsewhere, is JSON: modelcodec.py).
The caller forks while no other thread runs (batch.iter_files joins them first).
"""
from __future__ import annotations

import os
import pickle
import select
import signal
from collections.abc import Callable, Iterable

from ..fsutil import write_all


class WorkerFailed(RuntimeError):
    """A worker process could not start or ended without a result (killed by a signal,
    out of memory)."""


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker (its ``__cause__`` in the parent)."""

    def __str__(self) -> str:
        return self.args[0]


class Child:
    """A forked worker computing ``function(*args)``; ``result()`` once ``done``."""

    def __init__(self, pid: int, fd: int):
        self.pid = pid
        self.fd: int | None = fd
        self._received: list[bytes] = []
        self._status: int | None = None

    def fileno(self) -> int:
        return self.fd

    @property
    def done(self) -> bool:
        return self.fd is None

    def _read(self) -> None:
        """Take what the pipe holds; at its end, reap the child."""
        data = os.read(self.fd, 1 << 20)
        if data:
            self._received.append(data)
            return
        os.close(self.fd)
        self.fd = None
        self._status = os.waitpid(self.pid, 0)[1]

    def result(self):
        """What the function returned; raises what it raised, or ``WorkerFailed``."""
        payload = b"".join(self._received)
        self._received = []
        try:
            raised, value = pickle.loads(payload)
        except Exception:  # noqa: BLE001 - nothing, or a torn message: the child died
            raise WorkerFailed(_ended(self._status)) from None
        if raised:
            exception, traceback_text = value
            raise exception from RemoteTraceback(traceback_text)
        return value

    def stop(self) -> None:
        """End the child now (SIGTERM) and reap it; nothing more is read from it."""
        if self.fd is None:
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        os.close(self.fd)
        self.fd = None
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


def start(function: Callable, *args, running: Iterable[Child] = ()) -> Child:
    """Fork a child computing ``function(*args)``.  ``running``: the other children, whose
    pipes the new child closes (each pipe's end must be seen by the parent alone)."""
    try:
        read_end, write_end = os.pipe()
    except OSError as exc:  # EMFILE: too many open files
        raise WorkerFailed(f"cannot start a worker process: {exc.strerror or exc}") from None
    # Until the child has its own dispositions (_worker_signals), a signal would run the
    # parent's handler in it: held back across the fork, and the child starts with none
    # pending (POSIX).
    held = signal.pthread_sigmask(signal.SIG_BLOCK, _WORKER_SIGNALS)
    pid = None
    try:
        pid = os.fork()
    except OSError as exc:  # EAGAIN, ENOMEM: too many processes, or too little memory
        os.close(read_end)
        os.close(write_end)
        raise WorkerFailed(f"cannot start a worker process: {exc.strerror or exc}") from None
    finally:
        if pid != 0:  # (the parent, or no fork: a pending signal is handled now)
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
    if pid == 0:  # the child: never returns
        _run_child(write_end, [read_end, *(c.fd for c in running if c.fd is not None)],
                   function, args, held)
    os.close(write_end)
    return Child(pid, read_end)


def wait_any(children: Iterable[Child]) -> list[Child]:
    """Block until at least one of ``children`` is done; return those that are."""
    pending = [c for c in children if not c.done]
    while pending:
        ready, _, _ = select.select(pending, [], [])
        for child in ready:
            child._read()
        finished = [c for c in pending if c.done]
        if finished:
            return finished
    return [c for c in children if c.done]


def _run_child(write_end: int, inherited: list[int], function: Callable, args,
               mask: set) -> None:
    status = 1
    try:
        _worker_signals()
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for fd in inherited:
            os.close(fd)
        try:
            message = (False, function(*args))
        except BaseException as exc:  # noqa: BLE001 - handed to the parent, which raises it
            if not isinstance(exc, Exception):  # (SystemExit: not the parent's to obey)
                exc = RuntimeError(f"{type(exc).__name__} in a worker process: {exc}")
            message = (True, _picklable(exc))
        write_all(write_end, pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))
        status = 0
    finally:
        os._exit(status)


def _picklable(exc: BaseException) -> tuple[BaseException, str]:
    import traceback
    text = "".join(traceback.format_exception(exc))
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001 - an exception that cannot travel: its text does
        exc = RuntimeError(f"{type(exc).__name__}: {exc}")
    return exc, text


_WORKER_SIGNALS = {signal.SIGTERM, signal.SIGHUP, signal.SIGINT}


def _worker_signals() -> None:
    """Children only compute (the parent writes every file): SIGTERM may end them on the
    spot, and Ctrl-C is the parent's to handle (no traceback from every child)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _ended(status: int | None) -> str:
    if status is not None and os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        hint = " (out of memory?)" if number == signal.SIGKILL else ""
        return f"a worker process was killed by {name}{hint}"
    code = os.waitstatus_to_exitcode(status) if status is not None else "unknown"
    return f"a worker process ended without a result (exit status {code})"
