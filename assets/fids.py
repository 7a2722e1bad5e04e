"""A layer's feature ids (`stable_fid`: a hash of the record's own id, so an id survives re-publication and row order),
and the hashing of a large layer's ids by a child process while the build goes on (`FidsBeside`).

A blake2b per record is Python's work, the GIL held: ~0.7 s of the build's own thread per million records, the
ingest's critical path. The ids of each chunk are known once it is normalised; a child process (this file run as a
script: Python, numpy, hashlib) hashes them on the machine's other core while the build reads and types the next
chunks, with the same function. Whatever goes wrong with the child (it cannot start, it dies, it answers short), the
ids are hashed here instead: the same fids, later.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import pickle
import subprocess
import sys
from collections.abc import Iterable, Sequence

import numpy as np

# below this many records a layer's ids are hashed in the build's own thread: a child costs more than it saves
BESIDE_ROWS = 100_000


def stable_fid(layer_id: str, record_id: object) -> int:
    """Feature id derived from the record's own id, so it survives re-publication and row order;
    48 bits stay exact in JavaScript numbers and in every client's int64."""
    digest = hashlib.blake2b(f"{layer_id}\x1f{record_id}".encode(), digest_size=6).digest()
    return int.from_bytes(digest, "big") or 1


def stable_fids(layer_id: str, record_ids: Iterable[object]) -> np.ndarray:
    """`stable_fid` of each id (int64): the layer's part of the hash is computed once and copied per record
    (a million ids: half the time of hashing each whole text), the digests read as numbers by numpy."""
    layer = hashlib.blake2b(f"{layer_id}\x1f".encode(), digest_size=6)

    def digest(record_id: object) -> bytes:
        hashed = layer.copy()
        hashed.update(f"{record_id}".encode())
        return hashed.digest()

    ids = iter(record_ids)
    parts = []
    # a batch at a time: a million digests at once would be ~50 MB of small bytes objects
    while digests := b"".join(map(digest, itertools.islice(ids, 65_536))):
        padded = np.zeros((len(digests) // 6, 8), dtype=np.uint8)  # 6 big-endian bytes: the low 48 bits
        padded[:, 2:] = np.frombuffer(digests, dtype=np.uint8).reshape(-1, 6)
        parts.append(padded.view(">i8").ravel().astype(np.int64))
    fids = np.concatenate(parts) if parts else np.array([], dtype=np.int64)
    fids[fids == 0] = 1
    return fids


class FidsBeside:
    """`stable_fids(layer_id, <every id added, in order>)`, by a child process once BESIDE_ROWS ids are in.
    A context manager: leaving it stops a child still running."""

    def __init__(self, layer_id: str):
        self.layer_id = layer_id
        self.texts: list[list[str]] = []  # every id added, as the hash reads it: the fallback's input
        self.count = 0
        self.child: subprocess.Popen | None = None
        self.sent = 0  # lists of `texts` handed to the child
        self.failed = False

    def __enter__(self) -> FidsBeside:
        return self

    def __exit__(self, *_: object) -> None:
        self._stop()

    def add(self, ids: Sequence[object]) -> None:
        """The next ids, in layer order."""
        texts = [f"{record_id}" for record_id in ids]  # as stable_fids reads them; a text is itself, not a copy
        self.texts.append(texts)
        self.count += len(texts)
        if self.child is None and not self.failed and self.count >= BESIDE_ROWS:
            self._start()
        self._send()

    def result(self) -> np.ndarray:
        """The fids of every id added, in order; the child is gone afterwards."""
        if self.child is not None and not self.failed:
            with contextlib.suppress(OSError):
                self.child.stdin.close()
                data = self.child.stdout.read()
                self.child.wait()
                fids = np.frombuffer(data, dtype=np.int64)
                if self.child.returncode == 0 and len(fids) == self.count:
                    return fids.copy()
        self._stop()
        return stable_fids(self.layer_id, itertools.chain.from_iterable(self.texts))

    def _start(self) -> None:
        try:
            # -I: not this folder on the path (`assets`' modules are not the child's)
            self.child = subprocess.Popen(
                [sys.executable, "-I", __file__, self.layer_id],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,  # a child that fails says so by its answer: the ids are hashed here
            )
        except OSError:
            self.failed = True  # no process to be had: hashed here, at the end

    def _send(self) -> None:
        if self.child is None or self.failed:
            return
        try:
            while self.sent < len(self.texts):
                pickler = pickle.Pickler(self.child.stdin, protocol=pickle.HIGHEST_PROTOCOL)
                pickler.fast = True  # no memo of a flat list of texts: 100k ids take 2.6 ms instead of 19.5
                pickler.dump(self.texts[self.sent])
                self.sent += 1
            self.child.stdin.flush()
        except OSError:
            self.failed = True  # the child is gone: hashed here, at the end
            self._stop()

    def _stop(self) -> None:
        if self.child is None:
            return
        if self.child.poll() is None:
            self.child.kill()
        self.child.wait()
        for pipe in (self.child.stdin, self.child.stdout):
            with contextlib.suppress(OSError):
                pipe.close()


def _main(layer_id: str) -> int:
    # wanted only when the build has read every chunk: where the build's thread or the CSV reader want a core, it
    # is theirs
    with contextlib.suppress(OSError):
        os.nice(10)
    parts = []
    with contextlib.suppress(EOFError, pickle.UnpicklingError):  # the end, or a parent gone mid-list
        while True:
            parts.append(stable_fids(layer_id, pickle.load(sys.stdin.buffer)))
    fids = np.concatenate(parts) if parts else np.array([], dtype=np.int64)
    sys.stdout.buffer.write(fids.astype(np.int64).tobytes())
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
