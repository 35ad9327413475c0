"""Hash every file of a directory tree: subtasks read files, process tasks hash.

The script builds a temporary tree of files filled with random bytes, then
computes a manifest (the SHA-256 and SHA3-256 of every file) twice: serially
with ``hashlib`` in one thread (the baseline), and with nestpool, where each
``@process_task`` takes a batch of paths, reads them with a ``@thread_subtask``
on its worker's persistent thread pool (the reads overlap) and hashes them in
the worker process (the hashing runs in parallel across the workers). The file data never
crosses a process boundary: only paths go in and hex digests come back.

Run it: ``python examples/hash_tree.py [megabytes]``. It prints both runs'
throughput and whether every digest matches the serial ``hashlib`` one. The
speed-up depends on free cores: on a busy machine there may be none.
"""

from __future__ import annotations

import hashlib
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from nestpool import Pool, gather, process_task, thread_subtask

MEGABYTES = 128
BATCH = 16  # files per process task


def make_tree(root: Path, megabytes: int, seed: int = 3) -> list[Path]:
    """Create ``root/dir_a/dir_b/file_n`` files of 64 KiB to 1 MiB."""
    rng = random.Random(seed)
    paths: list[Path] = []
    budget = megabytes << 20
    while budget > 0:
        size = min(budget, rng.randrange(64, 1024) << 10)
        folder = root / f"dir_{rng.randrange(6)}" / f"sub_{rng.randrange(4)}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"file_{len(paths)}.bin"
        path.write_bytes(rng.randbytes(size))
        paths.append(path)
        budget -= size
    return paths


def digest(data: bytes) -> str:
    """CPU: the manifest entry of ``data``: its SHA-256 and SHA3-256."""
    return f"{hashlib.sha256(data).hexdigest()} {hashlib.sha3_256(data).hexdigest()}"


@process_task
def worker_pid() -> int:
    """Used to start the workers before timing."""
    return os.getpid()


@thread_subtask
def read(path: str) -> bytes:
    """IO: read one file (on the thread pool of the calling process)."""
    with open(path, "rb") as file:
        return file.read()


@process_task
def hash_batch(paths: list[str]) -> list[tuple[str, str]]:
    """One batch: read its files concurrently (subtasks), hash each (here)."""
    return [(path, digest(data)) for path, data in zip(paths, read.map(paths), strict=True)]


def batches(paths: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(paths), BATCH):
        yield paths[start : start + BATCH]


def serial_hashes(paths: list[str]) -> dict[str, str]:
    """The baseline: read and hash each file in turn with hashlib, in this thread."""
    manifest = {}
    for path in paths:
        data = Path(path).read_bytes()
        manifest[path] = f"{hashlib.sha256(data).hexdigest()} {hashlib.sha3_256(data).hexdigest()}"
    return manifest


def main() -> None:
    megabytes = int(sys.argv[1]) if len(sys.argv) > 1 else MEGABYTES
    with tempfile.TemporaryDirectory(prefix="nestpool-hash-tree-") as tmp:
        paths = [str(p) for p in make_tree(Path(tmp), megabytes)]
        total = sum(os.path.getsize(p) for p in paths) / 1e6
        print(f"tree: {len(paths)} files, {total:.0f} MB")

        start = time.perf_counter()
        expected = serial_hashes(paths)
        t_serial = time.perf_counter() - start
        print(
            f"serial hashlib (1 process, 1 thread): {t_serial:.2f}s "
            f"throughput={total / t_serial:.0f} MB/s"
        )

        with Pool(threads=8) as pool:
            # Start the workers before timing (with another task: a map sizes its
            # chunks from how long the task's earlier calls took).
            gather([worker_pid() for _ in range(pool.processes)])
            start = time.perf_counter()
            found = dict(pair for batch in hash_batch.map(batches(paths)) for pair in batch)
            t_pool = time.perf_counter() - start
        print(
            f"nestpool ({pool.processes} processes x 8 threads): {t_pool:.2f}s "
            f"throughput={total / t_pool:.0f} MB/s"
        )
    print(f"files hashed: {len(found)} of {len(paths)}")
    print(f"digests match serial hashlib: {found == expected}")
    print(f"speed-up over serial: {t_serial / t_pool:.1f}x")


if __name__ == "__main__":
    main()
