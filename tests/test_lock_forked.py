"""Worker processes of `sevm lock` (lock/forked.py): results and exceptions come back whole,
a killed worker is reported as such, and stopping ends a worker at once."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from sevmanifest.lock import forked

from lock_support import make_many, running, start_pooled_lock, stray_temp_files


def _finish(child: forked.Child):
    while not child.done:
        forked.wait_any([child])
    return child.result()


def _echo(value):
    return value


def test_a_result_larger_than_a_pipe_comes_back_whole():
    value = [bytes([i % 256]) * 1000 for i in range(3000)]  # ~3 MB: many pipe buffers
    assert _finish(forked.start(_echo, value)) == value


def _raise_value_error(text):
    raise ValueError(text)


def test_the_exception_of_a_worker_is_raised_with_its_traceback():
    child = forked.start(_raise_value_error, "bad input")
    with pytest.raises(ValueError, match="bad input") as caught:
        _finish(child)
    cause = caught.value.__cause__
    assert isinstance(cause, forked.RemoteTraceback)
    assert "_raise_value_error" in str(cause)  # where in the worker it was raised


class _Unpicklable(Exception):
    def __reduce__(self):
        raise TypeError("not picklable")


def _raise_unpicklable():
    raise _Unpicklable("odd")


def test_an_exception_that_cannot_travel_is_raised_by_its_text():
    with pytest.raises(RuntimeError, match="_Unpicklable: odd"):
        _finish(forked.start(_raise_unpicklable))


def _kill_self(number):
    os.kill(os.getpid(), number)
    time.sleep(10)


@pytest.mark.parametrize("number, words", [(signal.SIGKILL, "killed by SIGKILL (out of memory?)"),
                                           (signal.SIGTERM, "killed by SIGTERM")])
def test_a_killed_worker_is_reported_as_killed(number, words):
    with pytest.raises(forked.WorkerFailed, match=r"a worker process was " + words.replace(
            "(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        _finish(forked.start(_kill_self, number))


def _exit_early():
    os._exit(7)


def test_a_worker_that_exits_without_a_result():
    with pytest.raises(forked.WorkerFailed, match="without a result.*exit status 7"):
        _finish(forked.start(_exit_early))


def _sleep():
    time.sleep(30)


def test_stop_ends_a_worker_at_once_and_reaps_it():
    child = forked.start(_sleep)
    started = time.monotonic()
    child.stop()
    assert time.monotonic() - started < 2
    assert child.done
    with pytest.raises(ChildProcessError):
        os.waitpid(child.pid, os.WNOHANG)  # reaped: no zombie left


def _pipes_held(paths: list[str]) -> list[str]:
    """The pipes of ``paths`` (/proc/self/fd entries) this process holds."""
    return [p for p in paths if os.path.exists(p)]


def test_a_worker_holds_no_pipe_of_another_worker():
    """Each pipe's read end is the parent's alone: a second worker closes the first's."""
    first = forked.start(_sleep)
    try:
        second = forked.start(_pipes_held, [f"/proc/self/fd/{first.fd}"], running=[first])
        assert _finish(second) == []
    finally:
        first.stop()


def test_workers_do_not_flush_the_parents_buffered_output(tmp_path):
    script = (
        "import sys\n"
        "from sevmanifest.lock import forked\n"
        "sys.stdout.write('once\\n')  # buffered, not flushed, when the worker forks\n"
        "child = forked.start(len, 'abc')\n"
        "while not child.done:\n"
        "    forked.wait_any([child])\n"
        "assert child.result() == 3\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert out == "once\n"


def test_sevm_lock_says_a_worker_was_killed(tmp_path):
    """Killed from outside (the OOM killer does this): a plain error, exit 2, no traceback,
    the other worker stopped, and no temporary file left."""
    proc, _, workers = start_pooled_lock(tmp_path)
    os.kill(workers[0], signal.SIGKILL)
    proc.wait(timeout=30)
    stderr = proc.stderr.read()
    assert proc.returncode == 2, stderr
    assert "sevm: error: a worker process was killed by SIGKILL (out of memory?)" in stderr
    assert "Traceback" not in stderr and "internal error" not in stderr
    time.sleep(0.2)
    assert running(workers) == []
    assert stray_temp_files(tmp_path / "vms") == []


def test_a_pooled_lock_loads_no_process_pool_machinery(tmp_path):
    """What the forks saved (~25 ms before the first worker): concurrent.futures, and
    multiprocessing with socket and subprocess.  (logging is Lark's.)"""
    names = make_many(tmp_path, 48)
    probe = ("import json, sys\n"
             "from sevmanifest.cli import main\n"
             "status = main(['lock', '--jobs', '2', '--no-cache', *sys.argv[1:]])\n"
             "print(json.dumps({'status': status, 'modules': sorted(sys.modules)}))\n")
    done = subprocess.run([sys.executable, "-c", probe, *names], cwd=tmp_path / "vms",
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["status"] == 0 and "sevmanifest.lock.forked" in result["modules"]
    heavy = ("concurrent", "multiprocessing", "socket", "subprocess")
    assert [m for m in result["modules"] if m.split(".")[0] in heavy] == []
    assert len(list((tmp_path / "vms").glob("*.lock"))) == 48


def _signal_state():
    return (signal.pthread_sigmask(signal.SIG_BLOCK, []), signal.getsignal(signal.SIGTERM),
            signal.getsignal(signal.SIGHUP), signal.getsignal(signal.SIGINT))


def test_a_worker_has_its_own_signal_dispositions_and_the_parents_mask_is_kept():
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    mask, term, hup, interrupt = _finish(forked.start(_signal_state))
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before
    assert mask == before and (term, hup, interrupt) == (signal.SIG_DFL, signal.SIG_DFL,
                                                         signal.SIG_IGN)


_handled: list[str] = []


def _handled_here() -> list[str]:
    return list(_handled)


def test_a_signal_at_the_fork_is_the_parents_alone(monkeypatch):
    """SIGTERM arriving while a worker is forked runs the parent's handler, in the parent,
    once the fork is done; never the parent's handler in the child."""
    real_fork = os.fork

    def fork_under_a_signal():
        os.kill(os.getpid(), signal.SIGTERM)  # held back until the fork is done
        return real_fork()
    monkeypatch.setattr(os, "fork", fork_under_a_signal)
    previous = signal.signal(signal.SIGTERM, lambda *_: _handled.append(str(os.getpid())))
    try:
        _handled.clear()
        child = forked.start(_handled_here)
        assert _handled == [str(os.getpid())]
        assert _finish(child) == []  # the child's copy saw no handler run
    finally:
        signal.signal(signal.SIGTERM, previous)


def _exit_in_worker():
    raise SystemExit(143)


def test_a_system_exit_in_a_worker_is_a_failure_not_the_parents_exit():
    with pytest.raises(RuntimeError, match="SystemExit in a worker process: 143"):
        _finish(forked.start(_exit_in_worker))


def test_no_pipe_for_a_worker_is_a_plain_error(monkeypatch):
    import errno

    def no_pipe():
        raise OSError(errno.EMFILE, "Too many open files")
    monkeypatch.setattr(os, "pipe", no_pipe)
    with pytest.raises(forked.WorkerFailed, match="cannot start a worker process: Too many"):
        forked.start(_echo, 1)


PARSING_BESIDE_A_POOL = """
import sys, threading
from sevmanifest.frontend.parse import parse_text
from sevmanifest.lock import batch, workflow
names = sys.argv[1:]
text = open(names[0]).read()
def parse_forever():
    while True:
        parse_text(text, "other.sevm")
threading.Thread(target=parse_forever, daemon=True).start()
for _ in range(3):
    outcomes = batch.run_files(names, workflow._render_action, jobs=2, use_cache=False)
    assert all(o.output for o in outcomes)
print("done")
"""


def test_a_pool_beside_a_parsing_thread_does_not_deadlock(tmp_path):
    """A fork while another thread parses used to leave the parser's lock held in the
    worker for good (frontend/parse.py: forks wait for the parse to end)."""
    names = make_many(tmp_path, 48, vcpus="1")
    done = subprocess.run([sys.executable, "-c", PARSING_BESIDE_A_POOL, *names],
                          cwd=tmp_path / "vms", capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "done", done.stderr[-2000:]
