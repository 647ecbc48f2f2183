"""A cache of compiled manifests, so an unchanged manifest is not parsed again.

Compiling is a pure function of the manifest's text, the texts of everything it imports
(and where they really live: cycles are found by real path), the directory it is named
from (artefact paths are resolved against it) and sevm's own code.  An entry records all
of those; a lookup re-reads every source file and uses the entry only if each one is
byte-for-byte the same.  On a hit, ``sevm measure``, ``lock`` or ``render`` never import
Lark (most of their start-up), and ``sevm lock`` over a repository skips the parse of every
unchanged file.

Layout: ``$XDG_CACHE_HOME/sevmanifest/compiled-v1/<sha256 of the key>``, one file per
(working directory, manifest path as given), so an edited manifest replaces its entry rather
than adding one.  One flat directory: with pruning it holds hundreds of entries, not
millions, and a fan-out of subdirectories made ``sevm lock`` over 200 new manifests create
~140 directories (0.15-0.25 ms of each ~1 ms store).
A file is a SHA-256 line over the rest; a header line with the kernel and initrd paths
(hex of their NUL-separated bytes: ``earlyhash`` reads only this); a line of plain JSON with
the key, the source files' paths, real paths and digests, and what ``sevm lock`` may reuse
(``lock.reuse``: the lock text and the identities of the artefacts it was measured from);
then the warnings and the model, each a line of ``modelcodec`` (no pickle, nothing in it is
executed).  Only compilations without
errors are stored; their warnings are replayed on a hit.  Any trouble reading an entry is a
miss, any trouble writing one is ignored: the cache is a speed-up, never a source of errors.
``SEVM_NO_CACHE=1`` turns it off (with the digest cache).
"""
from __future__ import annotations

import hashlib
import os
import stat
import sys
import time
from collections import namedtuple

TYPE_CHECKING = False  # not typing's: importing typing costs earlyhash ~8 ms
if TYPE_CHECKING:
    from .diagnostics import Diagnostic
    from .model import Manifest

CACHE_SUBDIR = "compiled-v1"
MAX_ENTRY_SIZE = 8 << 20  # a 256 KiB manifest (the source limit) compiles to far less
MAX_AGE_DAYS = 30
PRUNE_ONE_STORE_IN = 64  # stores (misses) that also look for old entries to remove...
PRUNE_EVERY_SECONDS = 86400  # ...when the last look was this long ago: each look stats
# every entry, which in a cache of thousands cost more than the store that made it
PRUNED_MARKER = CACHE_SUBDIR + ".pruned"  # (beside CACHE_SUBDIR; its mtime: the last look)
_READ_ERRORS = (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError,
                RecursionError)


_FINGERPRINT: list[str] = []  # computed once per process


def code_fingerprint() -> str:
    """Changes whenever sevm's code, its grammar, Lark or Python change (an upgrade, or an
    edit in a source checkout), so no entry outlives the compiler that wrote it.  Plain
    ``os`` calls: ``earlyhash`` runs this before pathlib or importlib are loaded."""
    if not _FINGERPRINT:
        _FINGERPRINT.append(_code_fingerprint())
    return _FINGERPRINT[0]


def _code_fingerprint() -> str:
    package = os.path.dirname(os.path.abspath(__file__))
    files = []
    for folder, subfolders, names in os.walk(package):
        subfolders[:] = [d for d in subfolders if d != "__pycache__"]
        files += [os.path.join(folder, n) for n in names if n.endswith((".py", ".lark"))]
    checkout_grammar = os.path.join(package, "..", "..", "grammar", "sevm.lark")
    if os.path.exists(checkout_grammar):  # a source checkout keeps it outside the package
        files.append(os.path.normpath(checkout_grammar))
    # the Lark that `import lark` would load: the first on sys.path
    files += [os.path.join(entry, "lark", "__init__.py") for entry in sys.path
              if os.path.exists(os.path.join(entry, "lark", "__init__.py"))][:1]
    parts = [sys.version, package]
    for path in sorted(files):
        st = os.stat(path)
        parts.append(f"{path}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogateescape")).hexdigest()


def entry_key(path: str) -> str:
    """What an entry is for: this code, this working directory, this path as given."""
    return "\0".join((code_fingerprint(), os.getcwd(), path))


def entry_file(cache_dir: str, key: str) -> str:
    name = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()
    return os.path.join(cache_dir, CACHE_SUBDIR, name)


def read_entry(file: str) -> tuple[list[str], bytes] | None:
    """The kernel and initrd paths and the undecoded body of an intact entry, or None when
    it is damaged.  No JSON here: ``earlyhash`` calls this before json is loaded."""
    raw = read_bounded(file)
    check, _, rest = raw.partition(b"\n")
    if hashlib.sha256(rest).hexdigest().encode("ascii") != check:
        return None
    header, _, body = rest.partition(b"\n")
    paths = bytes.fromhex(header.decode("ascii"))
    return [os.fsdecode(p) for p in paths.split(b"\0") if p], body


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def read_bounded(path: str, limit: int = MAX_ENTRY_SIZE) -> bytes:
    """A regular file of at most ``limit`` bytes (never blocks on a planted FIFO)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError("not a regular file")
        chunks, size = [], 0
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise ValueError("too large")
    finally:
        os.close(fd)
    return b"".join(chunks)


class ValidEntry(namedtuple("ValidEntry", "meta warnings model sources")):
    """An entry whose key and source files checked out: ``meta`` (its plain-JSON line),
    the warnings and the model (``modelcodec`` lines, not decoded yet) and ``sources`` (the
    source texts, read for the check)."""
    __slots__ = ()


_READ = object()  # lookup(): read the entry (no ValidEntry given)


class CompileCache:
    """``lookup(path)`` and ``store(path, manifest, diagnostics, sources)``."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = os.fspath(directory)
        self.hits = self.misses = self.stores = 0

    def lookup(self, path: str, entry=_READ
               ) -> tuple[Manifest, list[Diagnostic], dict[str, str]] | None:
        """The compiled manifest, its warnings and the source texts, or None (a miss).
        ``entry``: what ``valid_entry(path)`` returned already (None: a miss), not read again."""
        try:
            if entry is _READ:
                entry = self._valid(path)
            found = self._decode(entry) if entry is not None else None
        except _READ_ERRORS:
            found = None
        if found is None:
            self.misses += 1
        else:
            self.hits += 1
        return found

    def has_entry(self, path: str) -> bool:
        """Whether ``path`` has an entry at all (not whether it is still valid)."""
        try:
            return path != "-" and os.path.exists(entry_file(self.directory, entry_key(path)))
        except OSError:  # the working directory was removed: the key needs it
            return False

    def store(self, path: str, manifest: Manifest, diagnostics: list[Diagnostic],
              sources: dict[str, str], *, lock: dict | None = None) -> None:
        """Write the entry; ``lock``: plain JSON data ``sevm lock`` may reuse (``lock.reuse``)."""
        if any(d.is_error for d in diagnostics):
            return
        import json

        from . import modelcodec
        from .fsutil import replace_with_chunks
        try:
            key = entry_key(path)
            # what `sevm measure` may start hashing before it has even parsed its options
            prefetch = sorted({os.fsencode(a.path) for vm in manifest.vms
                               for a in (vm.kernel, vm.initrd) if a is not None})
            header = b"\0".join(prefetch).hex().encode("ascii")
            deps = [[name, os.path.realpath(name), _digest(text)] for name, text in sources.items()]
            meta = json.dumps({"key": key, "deps": deps, "lock": lock}, separators=(",", ":"))
            lines = (meta, modelcodec.dumps(list(diagnostics)), modelcodec.dumps(manifest))
            # (json escapes everything that is not ASCII)
            rest = b"\n".join([header, *(line.encode("ascii") for line in lines)])
            if len(rest) > MAX_ENTRY_SIZE:
                if lock is not None:  # a huge matrix's lock: keep at least the compilation
                    self.store(path, manifest, diagnostics, sources)
                return
            check = hashlib.sha256(rest).hexdigest().encode("ascii") + b"\n"
            entry = entry_file(self.directory, key)
            # no fsync: an entry lost or torn by a crash fails its check line and is a miss
            try:
                replace_with_chunks(entry, [check, rest], durable=False, mode=0o600)
            except FileNotFoundError:  # the first entry: create the directory
                os.makedirs(os.path.dirname(entry), mode=0o700, exist_ok=True)
                replace_with_chunks(entry, [check, rest], durable=False, mode=0o600)
            self.stores += 1
        except (OSError, TypeError, ValueError, RecursionError):
            return
        if os.urandom(1)[0] < 256 // PRUNE_ONE_STORE_IN and self._prune_due():
            self.prune()

    def _prune_due(self) -> bool:
        try:
            last = os.stat(os.path.join(self.directory, PRUNED_MARKER)).st_mtime
        except OSError:
            return True
        return not 0 <= time.time() - last < PRUNE_EVERY_SECONDS

    def prune(self, now: float | None = None) -> int:
        """Remove entries unused for MAX_AGE_DAYS (a hit refreshes an entry's mtime once a
        day) and temporary files a crash left; returns how many.  Entries are per (working
        directory, path), so without this the cache would keep one for every temporary
        checkout a manifest was ever compiled in."""
        now = time.time() if now is None else now
        removed = 0
        root = os.path.join(self.directory, CACHE_SUBDIR)
        try:  # marked first: other processes storing meanwhile need not look too
            from .fsutil import touch
            touch(os.path.join(self.directory, PRUNED_MARKER), now)
        except OSError:
            pass
        try:
            for item in os.scandir(root):
                age = now - item.stat(follow_symlinks=False).st_mtime
                stray = item.name.startswith(".") and age > 86400
                if (stray or age > MAX_AGE_DAYS * 86400) and item.is_file(follow_symlinks=False):
                    os.unlink(item.path)
                    removed += 1
        except OSError:
            pass
        return removed

    def valid_entry(self, path: str) -> ValidEntry | None:
        """``path``'s entry if it is still valid (same code, working directory and source
        files), without decoding it; None for a miss."""
        try:
            return self._valid(path)
        except _READ_ERRORS:
            return None

    def lock_data(self, path: str) -> tuple[dict, list[Diagnostic], dict[str, str]] | None:
        """``lock_of`` the entry of ``path``, if it is still valid."""
        entry = self.valid_entry(path)
        return self.lock_of(entry) if entry is not None else None

    @staticmethod
    def lock_of(entry: ValidEntry) -> tuple[dict, list[Diagnostic], dict[str, str]] | None:
        """What ``store(..., lock=)`` recorded in ``entry``, with the warnings and the source
        texts (the model is not decoded); None when there is none."""
        try:
            lock = entry.meta.get("lock")
            return (lock, _diagnostics(entry.warnings), entry.sources) \
                if isinstance(lock, dict) else None
        except _READ_ERRORS:
            return None

    @staticmethod
    def _decode(entry: ValidEntry):
        from . import modelcodec
        from .model import Manifest
        manifest = modelcodec.loads(entry.model.decode("ascii"))
        if not isinstance(manifest, Manifest):
            return None
        return manifest, _diagnostics(entry.warnings), entry.sources

    def _valid(self, path: str) -> ValidEntry | None:
        """``path``'s entry, if its key matches and every source file still has the
        recorded bytes and real path."""
        import json

        from .frontend.source import read_source
        key = entry_key(path)
        try:
            found = read_entry(entry_file(self.directory, key))
        except FileNotFoundError:
            return None
        if found is None:
            return None
        meta_line, diagnostics, model = found[1].split(b"\n")
        meta = json.loads(meta_line)
        if meta["key"] != key:
            return None
        sources = {}
        for name, real, digest in meta["deps"]:
            if not all(isinstance(x, str) for x in (name, real, digest)):
                return None  # (an int "path" would be read as a file descriptor)
            text, problem = read_source(name)
            if problem is not None or _digest(text) != digest or os.path.realpath(name) != real:
                return None
            sources[name] = text
        _refresh(entry_file(self.directory, key))
        return ValidEntry(meta, diagnostics, model, sources)


def _diagnostics(line: bytes) -> list[Diagnostic]:
    from . import modelcodec
    from .diagnostics import Diagnostic
    diagnostics = modelcodec.loads(line.decode("ascii"))
    if not isinstance(diagnostics, list) or not all(isinstance(d, Diagnostic)
                                                    for d in diagnostics):
        raise ValueError("not a list of diagnostics")
    return diagnostics


def caching_disabled() -> bool:
    """``SEVM_NO_CACHE`` set to anything but empty or 0 turns every cache off."""
    return os.environ.get("SEVM_NO_CACHE", "") not in ("", "0")


def _refresh(entry: str) -> None:
    """Mark an entry used (its mtime), at most once a day: prune() keeps used entries."""
    import time
    try:
        if os.stat(entry).st_mtime < time.time() - 86400:
            os.utime(entry)
    except OSError:
        pass


def open_compile_cache() -> CompileCache | None:
    """The cache commands use: None when caching is disabled."""
    if caching_disabled():
        return None
    from .cachedir import cache_root
    root = cache_root()
    return CompileCache(root) if root is not None else None
