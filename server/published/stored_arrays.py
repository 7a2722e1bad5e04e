"""Arrays and values derived from one published version, built once per machine and kept on disk: a layer's box index
for tiles (server.tiles.index), its point index for bboxes (server.features.point_reads), the ranks of its time
columns and whether its features end before they start (server.features.time_ranks, provider).

The first process that asks builds them under a lock and writes them whole under a temporary name; every other
(the other workers, waiting on the lock instead of building their own, and every later start of the server) maps
the files read-only: N workers hold one copy in the page cache instead of N on their heaps, and a restart builds
nothing. Another version's arrays of the same name are removed once these are stored (a process still using them
keeps its mapping: the files' inodes live on). Where the folder cannot be written the arrays are built in memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from server.locks import machine_lock
from server.settings import get_server_settings

Arrays = dict[str, np.ndarray | None]
Built = tuple[Mapping[str, np.ndarray | None], Mapping[str, Any]]  # the arrays (None: absent) and what else, as JSON
_DESCRIBED = "index.json"
_FORMAT = "v2"  # in the folder's name: a folder of another layout is never read, and removed as another version


def digest(value: object) -> str:
    """A short stable name for a key part: its repr (tuples, strings, ints, dataclasses) is the same in any process."""
    return hashlib.blake2b(repr(value).encode(), digest_size=12).hexdigest()


def stored_arrays(
    folder: Path, name: str, version: str, build: Callable[[], Built | None]
) -> tuple[Arrays, dict] | None:
    """The arrays and values `build` makes of `version` of `name` (a published file), from `folder`, built by the
    first process that asks; None when `build` has nothing to keep for this version (nothing is stored then)."""
    target = _target(folder, name, version)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with machine_lock(folder / f".{name}.lock"):  # one builder per name; the others wait here, then map its files
            if not (target / _DESCRIBED).exists():
                built = build()
                if built is None:
                    return None
                _store(folder, name, target, *built)
    except OSError:
        return _in_memory(build())
    # None: removed meanwhile by a process storing another version; this one's arrays in memory then
    return read_stored_arrays(folder, name, version) or _in_memory(build())


def derived(kind: str, of: object, version: object, build: Callable[[], Built | None]) -> tuple[Arrays, dict] | None:
    """`stored_arrays` in the server's cache folder (`<cache>/<kind>/`), named by what they are derived from (`of`: the
    published file and the part of it) and by `version` (the file's identity, and what changes how they are made)."""
    return stored_arrays(get_server_settings().cache_path / kind, digest(of), digest(version), build)


def _in_memory(built: Built | None) -> tuple[Arrays, dict] | None:
    return None if built is None else (dict(built[0]), dict(built[1]))


def _target(folder: Path, name: str, version: str) -> Path:
    return folder / f"{name}-{version}.{_FORMAT}"


def _store(folder: Path, name: str, target: Path, arrays: Mapping[str, np.ndarray | None], values: Mapping) -> None:
    temporary = folder / f".{target.name}.{os.getpid()}.{threading.get_ident()}"
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir()
    for array_name, array in arrays.items():
        if array is not None:
            np.save(temporary / f"{array_name}.npy", array)
    (temporary / _DESCRIBED).write_text(json.dumps({"arrays": sorted(arrays), "values": dict(values)}))
    os.replace(temporary, target)
    for other in folder.glob(f"{name}-*"):
        if other != target:
            shutil.rmtree(other, ignore_errors=True)


def read_stored_arrays(folder: Path, name: str, version: str) -> tuple[Arrays, dict] | None:
    """What `stored_arrays` kept of `name` at `version`, memory-mapped read-only (plain arrays viewing the mapping,
    so numpy's calls on them cost what they cost on any array); None when it is not there (any more)."""
    target = _target(folder, name, version)
    try:
        described = json.loads((target / _DESCRIBED).read_text())
        arrays: Arrays = {}
        for array_name in described["arrays"]:
            path = target / f"{array_name}.npy"
            arrays[array_name] = np.load(path, mmap_mode="r").view(np.ndarray) if path.exists() else None
        return arrays, described["values"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
