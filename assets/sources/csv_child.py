"""A CSV's pieces (`csv_pieces.column_pieces`) made by a child process and handed over through a pipe.

Read by a thread of the build's own process, the pieces cost the build the time that thread held the GIL
(decoding, Arrow's conversions), which the build's own thread, the ingest's critical path, waited for. In a child,
all of the reading (~3.3 s CPU per million cp1251 rows) runs on the machine's other core, and the build only
unpickles each finished piece (its Arrow buffers: a copy). Measured on 1M repairs, five pairs in one run: the build
took 6.7-7.8 s instead of 7.2-8.4 s, with 6.1-6.9 s of CPU in the build's process instead of 9.4-11.4 s.

The child is this file run as a script (`python -I`): numpy, pyarrow and the two reader modules, without the
packages' `__init__` (pandas, every other reader); it starts in ~0.3 s. While it reads it holds ~350 MB (the
allocators keep what the pieces used), and it is gone before the build peaks, at the join of the chunks. It reads
the file through the parent's open descriptor: the file the parent opened, whatever happens to its name meanwhile.
The pipe holds back a child that is ahead of PIECES_AHEAD.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import subprocess
import sys
import tempfile
import types
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from assets.records import ColumnBatch

ROOT = Path(__file__).resolve().parents[2]  # the folder `assets` is in
# the parent's first look at the file only needs the header line: the child reads it all, from the start
HEADER_BYTES = 64 * 1024
# pieces taken out of the pipe ahead of the build: the child works on while the build is busy with a chunk's rows
PIECES_AHEAD = 3
# files of more pieces than this are read by a child: ~0.3 s to start, while a piece takes ~0.15 s in a thread
CHILD_PIECES = 4


class ChildPieces(Iterator["ColumnBatch"]):
    """`csv_pieces.column_pieces` of the file open as `handle` (its text after the header line), made by a child
    process started now (its start-up overlaps the caller's own). An error of the reading is raised where the
    piece would have come; `close` (a caller that stops early, or garbage collection) stops the child. A child
    that stops without saying why (killed, out of memory) is a SourceError naming the file: the file was not
    read to its end, and a layer never publishes part of a file as if it were all of it."""

    def __init__(self, handle: BinaryIO, header: list[str], source: str, delimiter: str, encoding: str):
        from assets.gpkg_writer import F_SETPIPE_SZ, PIPE_BYTES, fcntl
        from assets.sources.csv_pieces import PIECE_BYTES

        self.source = source
        given = {"header": header, "source": source, "delimiter": delimiter, "encoding": encoding, "size": PIECE_BYTES}
        # the child's messages go to a file, not a pipe nobody reads while this process is busy with the pieces
        self.messages = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        try:
            self.child = subprocess.Popen(
                # -I: not this folder on the path (its modules' names are ours, not the standard library's)
                [sys.executable, "-I", __file__, str(handle.fileno()), json.dumps(given)],
                stdout=subprocess.PIPE,
                stderr=self.messages,
                pass_fds=(handle.fileno(),),
            )
        except OSError as error:  # no memory or processes left for it: this run cannot read the file
            self.messages.close()
            raise _source_error(source, f"cannot start the CSV reader process: {error.strerror or error}") from None
        with contextlib.suppress(OSError, AttributeError):  # fewer hand-overs a piece, as the GeoPackage writer's
            fcntl.fcntl(self.child.stdout.fileno(), F_SETPIPE_SZ, PIPE_BYTES)

    def __next__(self) -> ColumnBatch:
        if self.child.stdout.closed:
            raise StopIteration
        try:
            more, value = pickle.load(self.child.stdout)
        except (EOFError, pickle.UnpicklingError):  # nothing more, or a piece cut short: the child is gone
            self.child.wait()
            self.messages.seek(0)
            said = self.messages.read().decode("utf-8", "replace").strip().splitlines()
            self.close()
            how = f"the CSV reader process stopped ({_how(self.child.returncode)})"
            raise _source_error(self.source, how + (f": {said[-1]}" if said else "")) from None
        if more:
            return value
        self.close()
        if value is None:
            raise StopIteration
        raise value

    def close(self) -> None:
        if self.child.poll() is None:
            self.child.kill()
        self.child.wait()
        self.child.stdout.close()
        self.messages.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


def _source_error(source: str, message: str) -> Exception:
    from assets.records import SourceError  # not at the top: the child runs this file before `assets` is importable

    return SourceError(source, message)


def _how(code: int | None) -> str:
    return f"signal {-code}" if code is not None and code < 0 else f"exit status {code}"


def _send(out: BinaryIO, more: bool, value: object) -> None:
    try:
        data = pickle.dumps((more, value), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as error:  # noqa: BLE001 - an error that cannot be pickled is sent as its one line
        data = pickle.dumps((False, RuntimeError(f"{type(value).__name__}: {value} ({error})")))
    out.write(data)
    out.flush()


def _main(descriptor: str, arguments: str) -> int:
    # the reader modules without their packages' __init__ (pandas, geopandas, every reader): the child needs two
    for package in ("assets", "assets.sources"):
        module = types.ModuleType(package)
        module.__path__ = [str(ROOT.joinpath(*package.split(".")))]
        sys.modules[package] = module
    sys.path.insert(0, str(ROOT))
    from assets.sources import csv_pieces

    given = json.loads(arguments)
    out = sys.stdout.buffer
    try:
        with os.fdopen(int(descriptor), "rb") as handle:
            handle.seek(0)
            pieces = csv_pieces.read_pieces(handle, given["encoding"], given["size"])
            if pieces is None:  # the parent read a header line there: written over meanwhile, not "no records"
                raise _source_error(given["source"], "the file changed while it was read")
            for batch in csv_pieces.column_pieces(
                pieces[1], given["header"], given["source"], given["delimiter"], given["encoding"]
            ):
                _send(out, True, batch)
    except BrokenPipeError:
        return 0  # the parent stopped reading: it wants no more
    except Exception as error:  # noqa: BLE001 - raised by the parent where the piece would have come
        with contextlib.suppress(BrokenPipeError):
            _send(out, False, error)
        return 0
    with contextlib.suppress(BrokenPipeError):
        _send(out, False, None)
    return 0


if __name__ == "__main__":
    sys.exit(_main(*sys.argv[1:3]))
