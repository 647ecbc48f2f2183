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
# QEMU's x86 loader places the kernel and the initrd below 4 GiB of guest memory, so neither
# can be larger; the bound keeps a mistyped path (a sparse disk image) from being hashed for
# minutes.
MAX_LOADED_SIZE = 4 << 30


def stream_into(fd: int, state, *, chunk_size: int = CHUNK_SIZE) -> int:
    """Feed the rest of ``fd`` into ``state`` in fixed-size chunks; return the byte count."""
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
