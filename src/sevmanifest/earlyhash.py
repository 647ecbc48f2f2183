"""Start hashing the kernel and initrd of ``sevm measure FILE`` or ``sevm lock FILES``
before sevm has loaded.

A launch digest is mostly SHA-256 over the artefacts, and the largest file (a 128 MiB
initrd: ~0.12 s) bounds the run.  Loading the CLI, the model and the measurement modules
takes ~0.1 s more (with Lark and a parse, ~0.2 s), and the file names are only known once
the manifest is compiled.  So the ``sevm`` entry point (``entry.py``) calls ``start`` first,
which guesses the files, and a thread hashes them while the main thread loads everything
else.  The guess for an unchanged manifest is exact: its entry in the compiled-manifest
cache has a header naming its kernel and initrd.  For a new or edited one it is the first
``kernel "…"`` and ``initrd "…"`` lines of its text, or of the files it imports.

One thread hashes the files, largest first, once they are known: the guess is made in the
calling thread first (~2 ms), because a thread that competes for the GIL with the main
thread's imports took ~15 ms to make it.  A thread that asks for the results while files are
still waiting for their turn hashes them itself, having nothing else to do: `sevm measure`
asks early, so its kernel is hashed beside the initrd once the start-up is done, not beside
the start-up in a third thread, where it took a core's share from the initrd (on two cores,
the initrd's 128 MiB took ~165 ms that way against ~140 ms alone); `sevm lock` asks after
compiling its first manifests, by when the thread has gone on to the kernel.

The result is a guess, never trusted as such: ``lock.shared.early_digests`` uses a digest
only for a file the compiled manifest really names, and only while the file has the identity
(device, inode, size, mtime, ctime) it had before it was read; anything else is hashed
again.  Files the digest cache already knows are left to it.  Nothing here reports errors:
whatever fails is done again, and reported, by the normal path.
"""
from __future__ import annotations

import hashlib
import os
import sys
import threading

Identity = tuple[int, int, int, int, int]
_thread: threading.Thread | None = None
_found: dict[str, tuple[Identity, str]] = {}
_interval: list[float] = []  # the switch interval before start()
# real path -> set once that file is hashed (or could not be)
_planned: dict[str, threading.Event] = {}
_unstarted: list[str] = []  # planned files no thread has started, the largest first
_unstarted_lock = threading.Lock()
_owner: list[int] = []  # the process that started the thread (forked workers did not)
SWITCH_INTERVAL = 0.0001
# the text guess: the manifest and the files it imports, at most this many; the source
# limit of frontend.source (a larger file is an error there, and no guess here)
GUESS_FILES = 8
# words of the command line tried for a guess: `sevm lock` over a large repository of
# manifests without a kernel must not read thousands of files in the background
GUESS_CANDIDATES = 8
GUESS_READ_LIMIT = 256 << 10


def start(argv: list[str]) -> None:
    """Begin, in a thread, for the first manifest among ``argv`` (the words after
    ``measure`` or ``lock``) that gives a guess."""
    global _thread
    from .compilecache import caching_disabled
    if caching_disabled():
        return
    candidates = [word for word in argv if word and not word.startswith("-")]
    use_digest_cache = "--no-cache" not in argv
    # While the main thread imports, a hashing thread gets the GIL back only when the main
    # thread is made to drop it: every 5 ms by default, for ~3 ms of GIL-free hashing of a
    # 4 MiB chunk.  At 0.1 ms (with 4 MiB chunks: stream.py) `sevm measure` took 244-248 ms
    # against 265 ms at 0.5 ms with 1 MiB (medians of 11 interleaved runs); restored in
    # results().
    if not _interval:
        _interval.append(sys.getswitchinterval())
    sys.setswitchinterval(min(_interval[0], SWITCH_INTERVAL))
    _planned.clear()
    _unstarted.clear()
    _owner[:] = [os.getpid()]
    try:
        files = _files_to_hash(candidates, use_digest_cache)
    except Exception:  # noqa: BLE001 - a guess that failed; the normal path does the work
        files = []
    _planned.update((path, threading.Event()) for path in files)
    _unstarted.extend(files[1:])
    _thread = None
    if files:
        # what the thread needs, imported here: in the thread, each import would wait for
        # the GIL behind the main thread's imports before the first byte is read
        from .measure import stream  # noqa: F401
        _thread = threading.Thread(target=_hash_in_turn, args=(files[0],),
                                   name="sevm-earlyhash", daemon=True)
        _thread.start()


def results(wanted: set[str] | None = None) -> dict[str, tuple[Identity, str]]:
    """Real path -> (identity before hashing, sha256 hex).  Waits for the files of
    ``wanted`` (real paths) the thread hashes, or for all of them; a file the manifest no
    longer names (it was edited since its entry was written) is not waited for.
    The files of ``wanted`` no thread has started yet are hashed first, in the calling
    thread.  Nothing in a process that did not start the thread (a forked worker)."""
    if _owner != [os.getpid()]:
        return {}
    if _thread is not None:
        _hash_unstarted(wanted)
        if wanted is None:
            _thread.join()
        else:
            for path in wanted & set(_planned):
                _planned[path].wait()
    if _interval:
        sys.setswitchinterval(_interval.pop())  # the one from before the first start()
    return dict(_found)


def _hash_in_turn(first: str) -> None:
    _hash_planned(first)
    _hash_unstarted(None)


def _hash_unstarted(wanted: set[str] | None) -> None:
    """Hash, in this thread, the planned files of ``wanted`` (all when None) that no thread
    has started; another caller at the same time takes the others."""
    while True:
        with _unstarted_lock:
            todo = [path for path in _unstarted if wanted is None or path in wanted]
            if not todo:
                return
            _unstarted.remove(todo[0])
        _hash_planned(todo[0])


def _hash_planned(path: str) -> None:
    done = _planned.get(path)  # (taken now: a later start() clears the plan)
    try:
        _hash(path)
    except Exception:  # noqa: BLE001 - as in start
        pass
    finally:
        if done is not None:
            done.set()


def _files_to_hash(candidates: list[str], use_digest_cache: bool) -> list[str]:
    from . import compilecache
    from .cachedir import DIGESTS_SUBDIR, cache_root, digest_entry_name
    root = cache_root()
    for candidate in candidates[:GUESS_CANDIDATES]:  # an option's value: no entry, no text
        try:
            found = compilecache.read_entry(compilecache.entry_file(
                root, compilecache.entry_key(candidate))) if root is not None else None
        except (OSError, ValueError):
            found = None
        paths = {os.path.realpath(p) for p in (found[0] if found else _guess_from_text(candidate))}
        if not paths:
            continue
        if use_digest_cache and root is not None:
            known = os.path.join(root, DIGESTS_SUBDIR)
            paths = {p for p in paths if not os.path.exists(os.path.join(known,
                                                                         digest_entry_name(p)))}
        return sorted(paths, key=_size, reverse=True)  # the largest first
    return []


def _guess_from_text(manifest: str) -> list[str]:
    """The first ``kernel "…"`` and ``initrd "…"`` of ``manifest`` or, breadth first, of the
    files it imports, resolved as the compiler resolves them (against the directory of the
    file that names them).  At most one of each: a file of many templates costs one wrong
    guess, not every image it names.  Strings with escapes are not guessed."""
    import re
    from .compilecache import read_bounded
    setting = re.compile(rb'^[ \t]*(kernel|initrd|import)[ \t]+"([^"\\\n]*)"', re.M)
    found: dict[bytes, str] = {}
    queue, seen = [manifest], 0
    while queue and seen < GUESS_FILES and len(found) < 2:
        file = queue.pop(0)
        seen += 1
        try:
            text = read_bounded(file, GUESS_READ_LIMIT)
        except (OSError, ValueError):
            continue
        for word, written in setting.findall(text):
            if word == b"import":
                queue.append(os.path.normpath(os.path.join(os.path.dirname(file),
                                                           os.fsdecode(written))))
            elif written and b"\0" not in written and word not in found:
                found[word] = os.path.normpath(os.path.join(
                    os.path.dirname(os.path.abspath(file)), os.fsdecode(written)))
    return list(found.values())


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _hash(path: str) -> None:
    from stat import S_ISREG

    from .measure.stream import MAX_LOADED_SIZE, stream_into
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not S_ISREG(st.st_mode) or st.st_size > MAX_LOADED_SIZE:
            return
        state = hashlib.sha256()
        if stream_into(fd, state, size=st.st_size) != st.st_size:
            return
    finally:
        os.close(fd)
    _found[path] = ((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns),
                    state.hexdigest())
