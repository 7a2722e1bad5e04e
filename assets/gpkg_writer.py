"""GDAL's GeoPackage write in a child process, fed Arrow record batches through a pipe while they are made.

`pyogrio.write_arrow` holds the GIL for all of GDAL's work: in one process, turning the frame into Arrow
batches and GDAL writing them take turns on one core. With the write in a child, the parent converts the next
batch while the child writes the last one, on the machine's other core. The child is this file run as a
script (not `python -m assets...`, which would import pandas through the package): Python, pyarrow and pyogrio.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa

try:
    import fcntl
except ImportError:  # not on Linux: the system's pipe size
    fcntl = None

# GDAL's SQLite settings in the writer. The file is written aside, fsynced and renamed (assets.publish): SQLite's
# own journal and syncs protect nothing there, and cost a third of the write. Rows are appended in rowid order, so
# the page cache barely matters: 64 MB of it cost the publication's peak 50-70 MB at 1M repairs.
GDAL_SQLITE = {"OGR_SQLITE_SYNCHRONOUS": "OFF", "OGR_SQLITE_JOURNAL": "OFF", "OGR_SQLITE_CACHE": "8"}
# Linux's largest pipe without privileges (/proc/sys/fs/pipe-max-size): fewer hand-overs per batch
PIPE_BYTES = 1 << 20
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


class WriterFailed(RuntimeError):
    """The child's own one-line account of why GDAL could not write (or that it died, and how)."""


def write_arrow_in_child(schema: pa.Schema, batches: Iterable[pa.RecordBatch], path: Path, options: dict) -> None:
    """`pyogrio.write_arrow(<the batches>, path, **options)` in a child process, with GDAL_SQLITE.
    Raises WriterFailed with the child's reason."""
    # the child's messages go to a file, not a pipe: GDAL may warn more than a pipe holds while this process is
    # blocked feeding the child, and neither would move again
    with tempfile.TemporaryFile() as messages:
        child = subprocess.Popen(
            # -I: not this folder on the path (its modules' names are ours, not pyarrow's or pyogrio's)
            [sys.executable, "-I", __file__, str(path), json.dumps(options)],
            stdin=subprocess.PIPE,
            stderr=messages,
            env={**os.environ, **GDAL_SQLITE},
            close_fds=True,
        )
        broken = _feed(child, schema, batches)
        messages.seek(0)
        reason = messages.read().decode("utf-8", "replace").strip()
    if reason and (child.returncode != 0 or broken is not None):
        raise WriterFailed(reason.splitlines()[-1])
    if child.returncode != 0:
        raise WriterFailed(f"the GeoPackage writer exited with {child.returncode}")
    if broken is not None:  # stopped reading early and said nothing: the file may lack rows
        raise WriterFailed(f"the GeoPackage writer stopped reading: {one_line(broken)}")


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _feed(child: subprocess.Popen, schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> OSError | None:
    """Send the batches to the child and wait for it. Returns the pipe's error if the child stopped reading (its
    exit status and messages say why); a failure of the batches themselves kills the child and is raised."""
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(child.stdin.fileno(), F_SETPIPE_SZ, PIPE_BYTES)
    broken = None
    try:
        with pa.ipc.new_stream(child.stdin, schema) as stream:
            for batch in batches:
                stream.write_batch(batch)
    except OSError as error:
        broken = error  # the child stopped reading (a broken pipe)
    except BaseException:
        child.kill()
        child.wait()
        raise
    finally:
        with contextlib.suppress(OSError):
            child.stdin.close()
    child.wait()
    return broken


def _main(path: str, options: str) -> int:
    # pyogrio looks for these at import to learn their versions; the writer needs none of them, and importing
    # them (pandas through GeoPandas) cost 0.7 s and 66 MB of the writer's memory at the publication's peak
    for unneeded in ("geopandas", "pandas", "shapely", "pyproj"):
        sys.modules.setdefault(unneeded, None)
    import pyogrio

    try:
        reader = pa.ipc.open_stream(sys.stdin.buffer)
        pyogrio.write_arrow(reader, path, **json.loads(options))
    except Exception as error:  # noqa: BLE001 - one line for the parent, which raises it
        sys.stderr.write(f"{type(error).__name__}: {one_line(error)}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(*sys.argv[1:3]))
