"""How fast could a whole-store read be with vectors packed in blobs? A floor for issue 12's goal.

The embedding store keeps one SQLite row per vector and reads 1M back at about 140,000/s
(docs/benchmarks.md, "Scale"). This probe measures the layout that would replace it, stripped
to the least work a read must do: vectors written in blobs of 4,096 (one per write batch, a
key table beside them), then read back the way ``EmbeddingStore.embed`` must, by hashing every
text (sha256, the store's key) into a position map, reading the blobs and checking the values
are finite, with no checksum and no matching. If this floor is below 300,000 vectors/s, no
packed layout reaches the goal on the machine it ran on.

    .venv/bin/python benchmarks/store_layout.py [--vectors 1000000] [--path /tmp/layout.sqlite]
"""

from __future__ import annotations

import argparse
import hashlib
import sqlite3
import time
from pathlib import Path

import numpy as np

DIM, BATCH = 384, 4096


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--path", type=Path, default=Path("/tmp/queryfit-layout.sqlite"))
    args = parser.parse_args()
    n, path = args.vectors, args.path
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    texts = [f"p{i}" for i in range(n)]
    hashes = [hashlib.sha256(t.encode()).digest() for t in texts]
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(
        "CREATE TABLE blocks(id INTEGER PRIMARY KEY, n INTEGER, hashes BLOB, vectors BLOB)"
    )
    conn.execute(
        "CREATE TABLE keys(hash BLOB PRIMARY KEY, block INTEGER, row INTEGER) WITHOUT ROWID"
    )
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for first in range(0, n, BATCH):
        vectors = rng.standard_normal((min(BATCH, n - first), DIM), dtype=np.float32)
        keys = hashes[first : first + len(vectors)]
        with conn:
            block = conn.execute(
                "INSERT INTO blocks(n, hashes, vectors) VALUES (?, ?, ?)",
                (len(vectors), b"".join(keys), vectors.tobytes()),
            ).lastrowid
            conn.executemany(
                "INSERT INTO keys VALUES (?, ?, ?)", [(h, block, i) for i, h in enumerate(keys)]
            )
    write = time.perf_counter() - start
    conn.close()
    size = path.stat().st_size

    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA mmap_size={2**31 - 2**16}")
    start = time.perf_counter()
    position = {hashlib.sha256(t.encode()).digest(): i for i, t in enumerate(texts)}
    keyed = time.perf_counter()
    out = np.empty((n, DIM), dtype=np.float32)
    filled = 0
    for count, blob in conn.execute("SELECT n, vectors FROM blocks ORDER BY id"):
        vectors = np.frombuffer(blob, dtype=np.float32).reshape(count, DIM)
        if not np.isfinite(vectors).all():
            raise SystemExit("non-finite vector")
        out[filled : filled + count] = vectors
        filled += count
    done = time.perf_counter()
    assert filled == n and len(position) == n
    print(
        f"{n:,} vectors of {DIM} floats, blocks of {BATCH:,}: written in {write:.1f} s, "
        f"{size / 1e9:.2f} GB on disk"
    )
    print(
        f"read: hashing the texts into a position map {keyed - start:.2f} s, reading and "
        f"checking the blocks {done - keyed:.2f} s, total {done - start:.2f} s = "
        f"{n / (done - start):,.0f} vectors/s"
    )
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
