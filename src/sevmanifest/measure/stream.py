"""Streaming a file into a SHA-256 state: the one loop every artefact byte goes through.

Kept free of sevm's other modules, so ``earlyhash`` can use it before they are loaded.
"""
from __future__ import annotations

import mmap
import os

# Bytes per read; bounds memory per hashing thread.  The buffer is an anonymous mapping, not a
# bytearray: the kernel copies into page-aligned memory much faster (a 128 MiB initrd in a
# fresh process: 0.12-0.13 s, against 0.17-0.20 s with a 1 or 4 MiB bytearray).  Large,
# because a hashing thread must win the GIL back after every read and every update while the
# main thread is busy importing (earlyhash): the same initrd hashed beside a busy thread took
# 275 ms with 1 MiB reads, 170 ms with 4 MiB, and 137 ms with 4 MiB and a 0.1 ms switch
# interval (110-120 ms alone); 8 MiB gained nothing more and costs 4 MiB more per thread.
CHUNK_SIZE = 4 << 20
# But never more than a sixteenth of the file: a fresh buffer's pages fault in one by one on
# first use (~6 µs a page on the build VM), which made a 4 MiB firmware take 10.5 ms to hash
# through a 4 MiB buffer and 4.7 ms through a 256 KiB one (3.1 ms for SHA-256 alone).
MIN_CHUNK_SIZE = 256 << 10
_PAGE = mmap.PAGESIZE
# QEMU's x86 loader places the kernel and the initrd below 4 GiB of guest memory, so neither
# can be larger; the bound keeps a mistyped path (a sparse disk image) from being hashed for
# minutes.
MAX_LOADED_SIZE = 4 << 30


def stream_into(fd: int, state, *, size: int | None = None, chunk_size: int | None = None) -> int:
    """Feed the rest of ``fd`` into ``state`` in fixed-size chunks; return the byte count.
    ``size``: the file's size, when the caller has it (the chunk size follows from it)."""
    if chunk_size is None:
        chunk_size = chunk_size_for(os.fstat(fd).st_size if size is None else size)
    buffer = mmap.mmap(-1, chunk_size)
    view = memoryview(buffer)
    total = 0
    try:
        while True:
            n = os.readv(fd, [buffer])
            if n == 0:
                return total
            state.update(view[:n])
            total += n
    finally:
        view.release()
        buffer.close()


def chunk_size_for(file_size: int) -> int:
    """A sixteenth of the file in whole pages, within MIN_CHUNK_SIZE..CHUNK_SIZE."""
    sixteenth = -(-file_size // 16 // _PAGE) * _PAGE
    return max(MIN_CHUNK_SIZE, min(CHUNK_SIZE, sixteenth))
