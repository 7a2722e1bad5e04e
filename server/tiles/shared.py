"""Encoded tiles on disk, shared by every worker of a server and kept across its restarts: a tile is rendered once
per publication, not once per worker process.

Layout under the folder (the server's cache folder, `tiles/`):

    <namespace>/<layers>/layers.json            what <layers> stands for: [[layer id, served version, fields], ...]
    <namespace>/<layers>/<z>-<x>-<y>-<when>.mvt  the tile's MVT bytes (empty file: an empty tile)
    <namespace>/<layers>/<z>-<x>-<y>-<when>.gz   the same, gzipped
    <namespace>/<layers>/prerendered-z<N>        written once z0..zN of the combined tileset are all there
    <namespace>/<layers>/carried                 written once the tiles a publication cannot have changed are linked
                                                 in from the folder of the version before (server/tiles/carry.py)
    <namespace>/switched/<layer, version>        [layer id, version]: tiles of the layer are answered at this version
                                                 by every worker from now on (server/tiles/vector.py, `refresh`)

`<namespace>` hashes what changes the bytes besides the data (the renderer's format, the tile policy, the catalog's
layer definitions, which database for PostGIS); `<layers>` the served version of each layer the tile reads and the
attributes it carries (the caller's level decides them); `<when>` the time window (VectorTiles keeps only tiles
without one here, see `_kept_on_disk`). The whole cache key of VectorTiles is in the path, so a publication, a
level or a datetime window can never meet another's bytes. A file is
written whole under a temporary name and renamed into place: a reader sees the tile or nothing. Folders of replaced
versions are removed by `prune`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shutil
import threading
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path
from typing import NamedTuple

from server.locks import machine_lock
from server.published.stored_arrays import digest

LOGGER = logging.getLogger(__name__)


# The digest of a key part every tile answered from the store names (its layers, its time window): the same few
# values over and over, a repr and a hash each time otherwise (~5 us of a warm tile's ~150 us).
key_digest = functools.lru_cache(maxsize=4096)(digest)


class StoredTile(NamedTuple):
    """A tile file of the store, open: its descriptor (the holder closes it) and its size in bytes."""

    fd: int
    size: int


class SharedTiles:
    """The tiles of one namespace. Reads and writes never raise: a tile that cannot be read is rendered again, one
    that cannot be written (disk full, read-only folder) is still answered."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._failed = False  # a failed write is logged once
        self._layer_folders: set[Path] = set()  # created by this process (layers.json written)
        self._prefix = f"{folder}{os.sep}"

    def _file(self, key: tuple, gzip: bool) -> str:
        layers, z, x, y, when = key
        return f"{self._prefix}{key_digest(layers)}{os.sep}{z}-{x}-{y}-{key_digest(when)}.{'gz' if gzip else 'mvt'}"

    def get(self, key: tuple, gzip: bool) -> bytes | None:
        """The tile's bytes, None when not there. Read on the event loop for every tile the worker's LRU does not
        hold: one open, fstat, read and close (Python's buffered `open` adds an ioctl, a seek and a second read)."""
        try:
            handle = os.open(self._file(key, gzip), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:  # not rendered yet (or its folder pruned meanwhile)
            return None
        try:
            size = os.fstat(handle).st_size
            body = os.read(handle, size)
        except OSError:
            return None
        finally:
            os.close(handle)
        # a file is renamed into place whole and this descriptor keeps its inode: short only if the kernel says so
        return body if len(body) == size else None

    def opened(self, key: tuple, gzip: bool) -> StoredTile | None:
        """The tile's file opened for sending it as it is (server/zero_copy.py; an empty tile is an empty file), None
        when not there; the caller closes it. The descriptor keeps the bytes of that moment: a file is only ever
        replaced, never changed in place."""
        try:
            handle = os.open(self._file(key, gzip), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            return StoredTile(handle, os.fstat(handle).st_size)
        except OSError:
            os.close(handle)
            return None

    def put(self, key: tuple, gzip: bool, body: bytes) -> None:
        target = Path(self._file(key, gzip))
        temporary = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}")
        try:
            self._layer_folder(target.parent, key[0])
            temporary.write_bytes(body)
            os.replace(temporary, target)
        except OSError as error:
            with contextlib.suppress(OSError):
                temporary.unlink()
            self._warn(error)

    def _warn(self, error: OSError) -> None:
        if not self._failed:
            LOGGER.warning("tiles: cannot write the shared tile store in %s: %s", self.folder, error)
        self._failed = True

    def _layer_folder(self, folder: Path, layers: tuple) -> None:
        if folder in self._layer_folders and folder.is_dir():
            return
        folder.mkdir(parents=True, exist_ok=True)
        described = folder / "layers.json"
        if not described.exists():
            temporary = folder / f".layers.json.{os.getpid()}.{threading.get_ident()}"
            described_layers = [[layer_id, identity, list(names)] for layer_id, identity, names in layers]
            temporary.write_text(json.dumps(described_layers))
            os.replace(temporary, described)
        self._layer_folders.add(folder)

    @contextlib.contextmanager
    def claim(self, layers: tuple | None, task: str, wait: bool = False) -> Iterator[bool]:
        """True for the one process that may do `task` for these layer versions now (None: for the namespace) (an
        exclusive lock on a file of their folder, released when the block ends or the process dies); False for
        every other (`wait`: True once the process holding it is done, False only when the lock cannot be taken)."""
        folder = self.folder if layers is None else self.folder / digest(layers)
        with contextlib.ExitStack() as stack:
            try:
                if layers is None:
                    folder.mkdir(parents=True, exist_ok=True)
                else:
                    self._layer_folder(folder, layers)
                held = stack.enter_context(machine_lock(folder / f".{task}.lock", wait=wait))
            except OSError:
                held = False
            yield held

    def done(self, layers: tuple, task: str) -> bool:
        return (self.folder / digest(layers) / task).exists()

    def mark_done(self, layers: tuple, task: str) -> None:
        with contextlib.suppress(OSError):
            (self.folder / digest(layers) / task).touch()

    def _switch_mark(self, layer_id: str, version: Hashable) -> Path:
        return self.folder / "switched" / digest(json.dumps([layer_id, version]))

    def switched(self, layer_id: str, version: Hashable) -> bool:
        """Whether a worker has switched the layer's tiles to `version` (as JSON has it) for every worker."""
        return self._switch_mark(layer_id, version).exists()

    def mark_switched(self, layer_id: str, version: Hashable) -> None:
        mark = self._switch_mark(layer_id, version)
        with contextlib.suppress(OSError):
            mark.parent.mkdir(parents=True, exist_ok=True)
            mark.write_text(json.dumps([layer_id, version]))

    def prune(self, served: dict[str, list[Hashable]]) -> int:
        """Remove the folders that read a version of a layer other than those served now (`served`: layer id ->
        versions, as JSON has them), and their switch marks; returns how many folders. A request still reading
        one of them then renders its tile again."""
        removed = 0
        with contextlib.suppress(OSError):
            for mark in (self.folder / "switched").iterdir():
                with contextlib.suppress(OSError, ValueError):
                    layer_id, version = json.loads(mark.read_text())
                    if version not in served.get(layer_id, ()):
                        mark.unlink()
        with contextlib.suppress(OSError):
            for folder in self.folder.iterdir():
                try:
                    layers = json.loads((folder / "layers.json").read_text())
                except (OSError, ValueError):
                    continue  # being created, or not ours
                if any(version not in served.get(layer_id, ()) for layer_id, version, *_ in layers):
                    shutil.rmtree(folder, ignore_errors=True)
                    self._layer_folders.discard(folder)
                    removed += 1
        return removed

    def folders(self) -> Iterator[tuple[Path, list]]:
        """Every folder of the namespace with what its layers.json says: [[layer id, version, fields], ...] (the
        version as JSON has it: a tuple comes back a list)."""
        with contextlib.suppress(OSError):
            for folder in self.folder.iterdir():
                try:
                    yield folder, json.loads((folder / "layers.json").read_text())
                except (OSError, ValueError):
                    continue  # being created, or not ours

    def link_from(self, source: Path, layers: tuple, keep: Callable[[int, int, int], bool]) -> int:
        """Hard-link into the folder of `layers` every tile file of `source` (another version's folder) whose z/x/y
        `keep` accepts: the same bytes under the new key, none copied. A tile already there (rendered meanwhile by
        a request) stays. Returns how many files were linked."""
        target = self.folder / digest(layers)
        linked = 0
        try:
            self._layer_folder(target, layers)
            names = os.listdir(source)
        except OSError as error:
            self._warn(error)
            return 0
        for name in names:
            if name.startswith(".") or not name.endswith((".mvt", ".gz")):
                continue
            z, x, y = (int(part) for part in name.split("-", 3)[:3])
            if not keep(z, x, y):
                continue
            try:
                os.link(source / name, target / name)
                linked += 1
            except FileExistsError:
                continue
            except OSError as error:  # pruned meanwhile, or a file system without hard links
                self._warn(error)
                return linked
        return linked
