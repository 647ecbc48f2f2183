"""Streaming a file into a SHA-256 state: the one loop every artefact byte goes through.

Kept free of sevm's other modules, so ``earlyhash`` can use it before they are loaded.
"""
from __future__ import annotations

import mmap
import os

# Bytes per read; bounds memory per hashing thread.  Large, so a hashing thread does ~1 ms
# of work (read and SHA-256, both without the GIL) per GIL acquisition while the main thread
# is busy importing.  The buffer is an anonymous mapping, not a bytearray: the kernel copies
# into page-aligned memory much faster.  Hashing a 128 MiB initrd in a fresh process (3 runs
# each): 0.12-0.13 s with a 256 KiB-4 MiB mapping; 0.17-0.20 s with a 1 or 4 MiB bytearray
# (0.08-0.10 s of it system time), 0.12-0.15 s with a 64 KiB one.
CHUNK_SIZE = 1 << 20
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
