"""The artefact digest cache: hits, misses, racy files, corruption, concurrency, bypass."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sevmanifest.lock import cache as cache_mod
from sevmanifest.lock.cache import RACY_SECONDS, DiskDigestCache, default_cache_dir, open_cache
from sevmanifest.measure.hashing import hash_file

from lock_support import age, stray_temp_files


def later(seconds: float = RACY_SECONDS + 60):
    """A clock far enough ahead that files created by the test are no longer racy."""
    return lambda: time.time() + seconds


class Warnings(list):
    def __call__(self, message: str) -> None:
        self.append(message)


@pytest.fixture
def artefact(tmp_path: Path) -> Path:
    path = tmp_path / "kernel.img"
    path.write_bytes(b"kernel bytes" * 1000)
    age(path)
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_cache(tmp_path: Path, clock=None) -> tuple[DiskDigestCache, Warnings]:
    warnings = Warnings()
    return DiskDigestCache(tmp_path / "cache", clock=clock or later(), warn=warnings), warnings


def test_miss_then_store_then_hit(tmp_path, artefact):
    cache, warnings = make_cache(tmp_path)
    st = os.stat(artefact)
    assert cache.lookup(artefact, st) is None
    cache.store(artefact, st, digest(artefact))
    assert cache.lookup(artefact, os.stat(artefact)) == digest(artefact)
    # a second process (a fresh object) sees it too
    fresh, _ = make_cache(tmp_path)
    assert fresh.lookup(artefact, os.stat(artefact)) == digest(artefact)
    assert (cache.hits, cache.misses, cache.stores, warnings) == (1, 1, 1, [])


def test_entry_names_resolved_path_so_symlinks_share_it(tmp_path, artefact):
    cache, _ = make_cache(tmp_path)
    link = tmp_path / "link.img"
    link.symlink_to(artefact)
    cache.store(link, os.stat(link), digest(artefact))
    assert cache.lookup(artefact, os.stat(artefact)) == digest(artefact)


@pytest.mark.parametrize("change", ["content-same-size", "size", "replace-file", "touch"])
def test_changed_file_misses(tmp_path, artefact, change):
    cache, _ = make_cache(tmp_path)
    cache.store(artefact, os.stat(artefact), digest(artefact))
    if change == "content-same-size":
        data = bytearray(artefact.read_bytes())
        data[0] ^= 1
        artefact.write_bytes(bytes(data))
        age(artefact)  # even with the old mtime restored: ctime and the timestamps differ
    elif change == "size":
        artefact.write_bytes(b"shorter")
    elif change == "replace-file":
        new = tmp_path / "new.img"
        new.write_bytes(artefact.read_bytes())
        os.replace(new, artefact)  # new inode
    else:
        os.utime(artefact)
    assert cache.lookup(artefact, os.stat(artefact)) is None


def test_restoring_mtime_does_not_fool_the_cache(tmp_path, artefact):
    """`touch -r`/`cp -p` can set mtime back, not ctime: the ctime in the key catches it."""
    cache, _ = make_cache(tmp_path)
    before = os.stat(artefact)
    cache.store(artefact, before, digest(artefact))
    time.sleep(0.02)
    data = bytearray(artefact.read_bytes())
    data[-1] ^= 0xFF
    artefact.write_bytes(bytes(data))
    os.utime(artefact, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(artefact)
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == \
           (before.st_size, before.st_mtime_ns, before.st_ino)
    assert cache.lookup(artefact, after) is None


def test_racy_file_is_not_stored(tmp_path):
    """A file modified within RACY_SECONDS of now could change again within one timestamp
    tick without changing its key: it is always hashed from its bytes."""
    cache, _ = make_cache(tmp_path, clock=time.time)
    fresh = tmp_path / "fresh.img"
    fresh.write_bytes(b"just written")
    cache.store(fresh, os.stat(fresh), digest(fresh))
    assert cache.lookup(fresh, os.stat(fresh)) is None
    assert (cache.stores, cache.racy) == (0, 1)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*"))


def test_racy_reference_is_the_lookup_time(tmp_path, artefact):
    """The file was young when it was looked up (and read); that hashing took long since
    does not make it safe to cache."""
    now = [time.time()]
    cache, _ = make_cache(tmp_path, clock=lambda: now[0])
    young = tmp_path / "young.img"
    young.write_bytes(b"young")
    st = os.stat(young)
    assert cache.lookup(young, st) is None
    now[0] += 3600  # "hashing took an hour"
    cache.store(young, st, digest(young))
    assert cache.stores == 0


def test_file_changed_during_hashing_is_not_stored(tmp_path, artefact):
    cache, _ = make_cache(tmp_path)
    st = os.stat(artefact)
    artefact.write_bytes(b"rewritten while being hashed")
    age(artefact)
    cache.store(artefact, st, "0" * 64)
    assert cache.stores == 0
    assert cache.lookup(artefact, os.stat(artefact)) is None


def entry_file(cache: DiskDigestCache, path: Path) -> Path:
    return cache._entry_path(os.path.realpath(path))


@pytest.mark.parametrize("damage", [
    b"", b"not json", b"[1, 2]", b"null", b'{"sha256": 5}', b"\xff\xfe\x00garbage",
    "flip-digest", "drop-check", "truncate",
])
def test_corrupt_entry_is_a_miss_with_one_warning(tmp_path, artefact, damage):
    cache, warnings = make_cache(tmp_path)
    cache.store(artefact, os.stat(artefact), digest(artefact))
    entry = entry_file(cache, artefact)
    text = entry.read_text()
    if damage == "flip-digest":
        record = json.loads(text)
        record["sha256"] = ("1" if record["sha256"][0] != "1" else "2") + record["sha256"][1:]
        entry.write_text(json.dumps(record))
    elif damage == "drop-check":
        record = json.loads(text)
        del record["check"]
        entry.write_text(json.dumps(record))
    elif damage == "truncate":
        entry.write_text(text[: len(text) // 2])
    else:
        entry.write_bytes(damage)
    assert cache.lookup(artefact, os.stat(artefact)) is None
    assert cache.lookup(artefact, os.stat(artefact)) is None
    assert len(warnings) == 1
    assert "corrupt digest cache entry" in warnings[0]
    # and the next store repairs it
    cache.store(artefact, os.stat(artefact), digest(artefact))
    assert cache.lookup(artefact, os.stat(artefact)) == digest(artefact)


def test_entry_is_a_directory_or_unreadable(tmp_path, artefact):
    cache, warnings = make_cache(tmp_path)
    entry = entry_file(cache, artefact)
    entry.mkdir(parents=True)
    assert cache.lookup(artefact, os.stat(artefact)) is None
    assert len(warnings) == 1 and "unreadable" in warnings[0]


@pytest.mark.parametrize("plant", ["fifo", "huge"])
def test_planted_entry_is_a_miss_not_a_hang(tmp_path, artefact, plant):
    cache, warnings = make_cache(tmp_path)
    entry = entry_file(cache, artefact)
    entry.parent.mkdir(parents=True)
    if plant == "fifo":
        os.mkfifo(entry)
    else:
        entry.write_bytes(b" " * (cache_mod.MAX_ENTRY_SIZE + 1))
    assert cache.lookup(artefact, os.stat(artefact)) is None
    assert len(warnings) == 1 and "unreadable" in warnings[0]


def test_unwritable_cache_never_breaks_a_run(tmp_path, artefact):
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache directory should be")
    cache, warnings = make_cache(tmp_path)
    for _ in range(3):
        cache.store(artefact, os.stat(artefact), digest(artefact))
        assert cache.lookup(artefact, os.stat(artefact)) is None
    assert len(warnings) == 1 and "not writable" in warnings[0]


def test_store_rejects_malformed_digest(tmp_path, artefact):
    cache, _ = make_cache(tmp_path)
    for bad in ("", "ABCD" * 16, "g" * 64, "0" * 63):
        cache.store(artefact, os.stat(artefact), bad)
    assert cache.stores == 0


def test_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "sevmanifest"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG spec says: ignore
    assert default_cache_dir() == Path.home() / ".cache" / "sevmanifest"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "sevmanifest"


def test_bypass(monkeypatch):
    monkeypatch.delenv("SEVM_NO_CACHE", raising=False)
    assert open_cache(False) is None
    assert isinstance(open_cache(True), DiskDigestCache)
    monkeypatch.setenv("SEVM_NO_CACHE", "1")
    assert open_cache(True) is None


def test_hash_file_uses_the_cache(tmp_path, artefact):
    """Through the measurement engine's hashing: the second hash is served by the cache,
    the third (after a change) is read from the bytes again."""
    cache, _ = make_cache(tmp_path)
    first = hash_file(artefact, cache=cache)
    second = hash_file(artefact, cache=cache)
    assert (first.from_cache, second.from_cache) == (False, True)
    assert first.sha256_hex == second.sha256_hex == digest(artefact)
    artefact.write_bytes(b"new kernel")
    age(artefact)
    third = hash_file(artefact, cache=cache)
    assert (third.from_cache, third.sha256_hex) == (False, digest(artefact))


WRITER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from sevmanifest.lock.cache import DiskDigestCache
    cache_dir, seed, rounds = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    files = [Path(p) for p in sys.argv[4:]]
    problems = []
    cache = DiskDigestCache(cache_dir, clock=lambda: time.time() + 3600, warn=problems.append)
    expected = {p: p.read_text().strip() for p in files}   # each file holds its own digest
    for i in range(rounds):
        for p in files:
            st = os.stat(p)
            got = cache.lookup(p, st)
            if got is not None and got != expected[p]:
                problems.append(f"wrong digest for {p}")
            cache.store(p, st, expected[p])
    print(len(problems), cache.hits, cache.stores, *problems)
""")


def test_concurrent_processes_share_the_cache_safely(tmp_path):
    """Four processes store and look up the same entries at once: nobody ever reads a
    partial or wrong entry, and no temporary file is left behind."""
    files = []
    for i in range(20):
        path = tmp_path / f"a{i}.img"
        path.write_text(hashlib.sha256(str(i).encode()).hexdigest() + "\n")
        age(path)
        files.append(str(path))
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "cache"), str(n),
                               "30", *files], stdout=subprocess.PIPE, text=True)
             for n in range(4)]
    reports = [p.communicate(timeout=120)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert [r[0] for r in reports] == ["0"] * 4, reports
    assert sum(int(r[1]) for r in reports) > 0  # they did share entries
    assert stray_temp_files(tmp_path / "cache") == []
    entries = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert len(entries) == 20


def test_cache_module_exports_protocol_methods():
    from sevmanifest.measure.hashing import DigestCache  # noqa: F401  (the protocol exists)
    assert callable(cache_mod.DiskDigestCache.lookup) and callable(cache_mod.DiskDigestCache.store)


def test_open_cache_hands_its_warning_to_a_library_caller(tmp_path, artefact, monkeypatch, capsys):
    """A library caller's damaged cache entry printed "sevm: warning: ..." to its stderr."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("SEVM_NO_CACHE", raising=False)
    logged: list[str] = []
    cache = open_cache(warn=logged.append)
    entry = entry_file(cache, artefact)
    entry.parent.mkdir(parents=True, exist_ok=True)
    entry.write_bytes(b"not json")
    assert cache.lookup(artefact, os.stat(artefact)) is None
    assert len(logged) == 1 and "corrupt digest cache entry" in logged[0]
    assert capsys.readouterr() == ("", "")
