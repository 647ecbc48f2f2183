"""Hostile host inputs to `sevm verify` and `sevm measure`: mutated QMP replies, blobs and
nonces of the wrong length, TIK files of the wrong size, and files that are not files.

Each case ends in a result or a clean diagnostic (exit 0, 1 or 2, no traceback, no
"internal error"), within a deadline.  tests/test_verify_qmp.py covers the QMP parser's
individual rules; this file drives the whole command with generated input.
"""
from __future__ import annotations

import base64
import json
import os
import threading
import time

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from hostile_support import AMDSEV_FW, fuzz_settings, run_cli, special_files
from sevmanifest.measure import fileio

TIK = bytes(range(0xA0, 0xB0))
QUERY_SEV = {"enabled": True, "api-major": 1, "api-minor": 55, "build-id": 21, "policy": 1,
             "state": "launch-secret", "handle": 1, "sev-type": "sev"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A one-vm SEV manifest, its TIK, and the blob a host would report for it."""
    d = tmp_path_factory.mktemp("host")
    (d / "vm.sevm").write_text(f'vm "v" {{\n  type sev\n  firmware "{AMDSEV_FW}"\n}}\n')
    (d / "tik.bin").write_bytes(TIK)
    nonce = base64.b64encode(bytes(range(16))).decode()
    run = run_cli(["measure", str(d / "vm.sevm"), "--format", "json", "--no-cache",
                   "--tik", str(d / "tik.bin"), "--mnonce", nonce, "--api-major", "1",
                   "--api-minor", "55", "--build", "21"]).clean()
    blob = json.loads(run.out)["vms"][0]["variants"][0]["measurement_blob"]
    return d, blob


def verify(d, *extra: str, stdin: bytes = b""):
    return run_cli(["verify", str(d / "vm.sevm"), *extra], stdin=stdin).clean()


def test_the_fixture_verifies(setup):
    d, blob = setup
    run = verify(d, "--tik", str(d / "tik.bin"), "--measurement", blob, "--api-major", "1",
                 "--api-minor", "55", "--build", "21")
    assert run.rc == 0, run.err


# ---- QMP replies: valid ones, mutated ------------------------------------------------------

def mutate(text: str, draw) -> bytes:
    data = bytearray(text.encode())
    kind = draw(st.sampled_from(["flip", "truncate", "splice", "insert", "none"]))
    if kind == "flip" and data:
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, len(data) - 1))] ^= draw(st.integers(1, 255))
    elif kind == "truncate":
        data = data[:draw(st.integers(0, len(data)))]
    elif kind == "splice" and data:
        a, b = sorted(draw(st.lists(st.integers(0, len(data)), min_size=2, max_size=2)))
        data = data[:a] + data[b:] + data[a:b]
    elif kind == "insert":
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.sampled_from([b"9" * 400, b"[" * 5000, b"\\ud800", b"\x00", b"\xff",
                                            b"1e999", b"-0", b"NaN", b'"x":1,', b"\xef\xbb\xbf"]))
    return bytes(data)


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(1 << 70), 1 << 70),
                      st.floats(allow_nan=False), st.text(max_size=6))


@st.composite
def query_sev_replies(draw) -> bytes:
    reply = dict(QUERY_SEV)
    for key in draw(st.lists(st.sampled_from(sorted(reply)), max_size=2, unique=True)):
        if draw(st.booleans()):
            del reply[key]
        else:
            reply[key] = draw(json_leaf)
    if draw(st.booleans()):
        reply = {"return": reply, "id": "libvirt-1"}
    return mutate(json.dumps(reply), draw)


@st.composite
def launch_measure_replies(draw, blob: str) -> bytes:
    data = draw(st.one_of(
        st.just(blob),
        st.binary(max_size=80).map(lambda b: base64.b64encode(b).decode()),
        st.binary(max_size=80).map(lambda b: base64.urlsafe_b64encode(b).decode()),
        st.binary(min_size=48, max_size=48).map(lambda b: b.hex()),
        st.text(max_size=70)))
    return mutate(json.dumps({"data": data}), draw)


@fuzz_settings("qmp replies")
@given(data=st.data())
@example(data=None)  # the unmutated pair, through the same path
def test_mutated_qmp_replies(setup, data):
    d, blob = setup
    if data is None:
        qs, lm = json.dumps(QUERY_SEV).encode(), json.dumps({"data": blob}).encode()
    else:  # mostly one reply broken, so the other's checks are reached too
        broken = data.draw(st.sampled_from(["query-sev", "launch-measure", "both"]))
        qs = (data.draw(query_sev_replies()) if broken != "launch-measure"
              else json.dumps(QUERY_SEV).encode())
        lm = (data.draw(launch_measure_replies(blob)) if broken != "query-sev"
              else json.dumps({"data": blob}).encode())
    (d / "qs.json").write_bytes(qs)
    (d / "lm.json").write_bytes(lm)
    run = verify(d, "--tik", str(d / "tik.bin"), "--query-sev", str(d / "qs.json"),
                 "--launch-measure", str(d / "lm.json"))
    if run.rc == 2:
        assert "qs.json" in run.err or "lm.json" in run.err, run.err
    if data is None:
        assert run.rc == 0, run.err


# ---- --measurement / --mnonce of every length and spelling ---------------------------------

def spellings(length_bytes: st.SearchStrategy) -> st.SearchStrategy[str]:
    raw = length_bytes.flatmap(lambda n: st.binary(min_size=n, max_size=n))
    return st.one_of(
        raw.map(lambda b: base64.b64encode(b).decode()),
        raw.map(lambda b: base64.b64encode(b).decode().rstrip("=")),
        raw.map(lambda b: base64.urlsafe_b64encode(b).decode()),
        raw.map(lambda b: b.hex()), raw.map(lambda b: "0x" + b.hex().upper()),
        raw.map(lambda b: " " + b.hex() + "\n"),
        st.text(max_size=100))


@fuzz_settings("blob spellings")
@given(st.integers(0, 3),
       spellings(st.sampled_from([0, 1, 15, 16, 17, 31, 32, 33, 47, 48, 49, 64])),
       spellings(st.sampled_from([0, 15, 16, 17, 32])))
@example(0, "A" * 64, "")  # 64 hex digits that are also base64 of 48 bytes
@example(0, "=" * 64, "")
@example(0, "\udcff" * 64, "")  # an undecodable argv byte
@example(1, "00" * 32, "0x" + "00" * 16)
def test_measurement_and_mnonce_spellings(setup, form, measurement, mnonce):
    d, _ = setup
    host = ["--api-major", "1", "--api-minor", "55", "--build", "21"]
    if form == 0:
        argv = ["verify", str(d / "vm.sevm"), "--tik", str(d / "tik.bin"), "--measurement",
                measurement, *host]
    elif form == 1:
        argv = ["verify", str(d / "vm.sevm"), "--tik", str(d / "tik.bin"), "--measurement",
                measurement, "--mnonce", mnonce, *host]
    else:
        argv = ["measure", str(d / "vm.sevm"), "--no-cache", "--tik", str(d / "tik.bin"),
                "--mnonce", mnonce, *host]
    run = run_cli(argv).clean()
    if run.rc == 2:  # the message names the option that was wrong
        assert "--measurement" in run.err or "--mnonce" in run.err, run.err


# ---- TIK files of the wrong size or kind -----------------------------------------------------

@fuzz_settings("tik files")
@given(st.one_of(st.binary(max_size=40), st.sampled_from([
    TIK.hex().encode(), TIK.hex().encode() + b"\n", base64.b64encode(TIK),
    base64.b64encode(TIK) + b"\n",
    bytes(16) + TIK, TIK + b"\n", bytes(4097)])))
def test_tik_files(setup, content):
    d, blob = setup
    (d / "odd-tik.bin").write_bytes(content)
    host = ["--api-major", "1", "--api-minor", "55", "--build", "21"]
    for argv in (["verify", str(d / "vm.sevm"), "--measurement", blob],
                 ["measure", str(d / "vm.sevm"), "--no-cache", "--mnonce", "00" * 16]):
        run = run_cli([*argv, "--tik", str(d / "odd-tik.bin"), *host]).clean()
        assert (run.rc == 2) == (len(content) != 16), run.err
        if run.rc == 2:
            assert "TIK file" in run.err and f"{len(content)} bytes" in run.err or \
                "larger than" in run.err


# ---- files that are not files ---------------------------------------------------------------

INPUT_OPTIONS = ("--tik", "--query-sev", "--launch-measure")


@pytest.mark.parametrize("option", INPUT_OPTIONS)
def test_special_files_as_verify_inputs(setup, tmp_path, option, monkeypatch):
    d, blob = setup
    (d / "qs.json").write_text(json.dumps(QUERY_SEV))
    (d / "lm.json").write_text(json.dumps({"data": blob}))
    monkeypatch.setattr(fileio, "PIPE_WAIT_SECONDS", 0.3)  # a FIFO nobody writes to
    good = {"--tik": str(d / "tik.bin"), "--query-sev": str(d / "qs.json"),
            "--launch-measure": str(d / "lm.json")}
    with special_files(tmp_path) as specials:
        for name, path in specials.items():
            argv = [a for o in INPUT_OPTIONS for a in (o, str(path) if o == option else good[o])]
            started = time.monotonic()
            run = verify(d, *argv)
            assert run.rc == 2 and time.monotonic() - started < 10, (name, run.err)
            assert str(path) in run.err, (name, run.err)
            if name == "fifo":
                assert "no end of input from the pipe after 0.3 s" in run.err


def test_a_pipe_with_a_slow_writer_is_read(setup):
    """Pipes are inputs too (<(virsh ...), '-'): a writer that takes a moment is waited for."""
    d, blob = setup
    read_end, write_end = os.pipe()

    def writer():
        time.sleep(0.3)
        os.write(write_end, json.dumps({"data": blob}).encode())
        os.close(write_end)
    thread = threading.Thread(target=writer)
    thread.start()
    try:
        run = verify(d, "--tik", str(d / "tik.bin"), "--launch-measure", f"/dev/fd/{read_end}",
                     "--api-major", "1", "--api-minor", "55", "--build", "21")
    finally:
        thread.join()
        os.close(read_end)
    assert run.rc == 0, run.err


def test_library_reader_bounds_a_pipe(tmp_path):
    """read_small_input reads at most limit + 1 bytes from an endless writer."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    try:
        os.write(write_end, b"x" * 60_000)
        data = fileio.read_small_input(f"/dev/fd/{read_end}", "reply", 1000, wait=2)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert len(data) == 1001


def test_stdin_terminal_is_refused_not_waited_on(setup):
    """`--tik -` with a terminal on stdin would wait for typing: refused at once."""
    import pty
    import subprocess
    import sys
    d, blob = setup
    controller, terminal = pty.openpty()
    argv = ["verify", str(d / "vm.sevm"), "--tik", "-", "--measurement", blob,
            "--api-major", "1", "--api-minor", "55", "--build", "21"]
    try:
        proc = subprocess.run([sys.executable, "-m", "sevmanifest", *argv], stdin=terminal,
                              capture_output=True, timeout=60)
    finally:
        os.close(controller)
        os.close(terminal)
    assert proc.returncode == 2 and b"is a terminal" in proc.stderr, proc.stderr


# ---- fixed hostile replies through the command (the parser's unit tests: test_verify_qmp) --

HOSTILE_REPLIES = {
    "huge integer": '{"data": "x", "n": ' + "9" * 100_000 + "}",
    "huge exponent": '{"data": 1e999999}',
    "deep arrays": "[" * 200_000 + "]" * 200_000,
    "deep objects": '{"a":' * 100_000 + "1" + "}" * 100_000,
    "NaN": '{"data": NaN}',
    "UTF-16": json.dumps({"data": "x"}).encode("utf-16").decode("latin-1"),
    "BOM": "\ufeff" + json.dumps({"data": "x"}),
    "lone surrogate": '{"data": "\\ud800\\udc00\\ud800"}',
    "NUL": '{"data": "\u0000"}',
    "long string": json.dumps({"data": "A" * 900_000}),
}


@pytest.mark.parametrize("name", HOSTILE_REPLIES)
@pytest.mark.parametrize("option", ["--launch-measure", "--query-sev"])
def test_hostile_replies(setup, name, option):
    d, blob = setup
    (d / "hostile.json").write_text(HOSTILE_REPLIES[name], encoding="latin-1"
                                    if name == "UTF-16" else "utf-8", errors="surrogatepass")
    (d / "qs.json").write_text(json.dumps(QUERY_SEV))
    (d / "lm.json").write_text(json.dumps({"data": blob}))
    files = {"--query-sev": str(d / "qs.json"), "--launch-measure": str(d / "lm.json")}
    files[option] = str(d / "hostile.json")
    run = verify(d, "--tik", str(d / "tik.bin"), *[a for o, p in files.items() for a in (o, p)])
    assert run.rc == 2 and "hostile.json" in run.err, run.err
