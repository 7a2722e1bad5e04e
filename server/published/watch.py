"""The identities of the published files, stat'ed again only after the kernel reported a change in their folders.

The server asks for the published files' signature on every request, on the event loop. One `os.stat` per file
each time hands the GIL to the request threads once per file, and the event loop then waits for it back (up to the
switch interval per stat): under load that was the event loop's largest cost. Here each folder is watched with
inotify: the kernel queues an event for a rename, a creation, a deletion or a write of a name in the folder before
the system call that made it returns, so a request that starts after a publication's rename finds the event queued,
and only then are the files stat'ed again. Checking the queue is one non-blocking `read` called through
`ctypes.PyDLL`, which keeps the GIL: nothing to hand over, nothing to wait for.

Wherever that cannot be promised (not Linux, no inotify, a folder missing or reached through a symbolic link, a
watched file that is a symbolic link, whose target could change without an event in the folder) every call stats
the files, as before.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import struct
import threading
import time
from pathlib import Path

from server.published.files import Signature, published_signature

LOGGER = logging.getLogger(__name__)

IN_NONBLOCK, IN_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC
# what can change a file's identity (path, device, inode, mtime, size) as seen from its folder
IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE = 0x2, 0x4, 0x8
IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x40, 0x80, 0x100, 0x200
IN_DELETE_SELF, IN_MOVE_SELF = 0x400, 0x800
IN_Q_OVERFLOW, IN_IGNORED = 0x4000, 0x8000
CHILD = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
MASK = CHILD | IN_DELETE_SELF | IN_MOVE_SELF
FOLDER_GONE = IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED | IN_Q_OVERFLOW  # watch again from scratch
EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then len bytes of name
BUFFER_BYTES = 64 * 1024
RETRY_SECONDS = 1.0  # how often a failed set-up is tried again (meanwhile every call stats)


def _libc() -> ctypes.PyDLL | None:
    """The C library, its functions called with the GIL held (PyDLL): each call here is a system call that does
    not block, and keeping the GIL is the point."""
    try:
        libc = ctypes.PyDLL(None, use_errno=True)
        for name, argtypes in (
            ("inotify_init1", [ctypes.c_int]),
            ("inotify_add_watch", [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]),
            ("read", [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]),
        ):
            function = getattr(libc, name)
            function.argtypes = argtypes
            function.restype = ctypes.c_ssize_t if name == "read" else ctypes.c_int
        return libc
    except (OSError, AttributeError):
        return None


LIBC = _libc()


class WatchedFiles:
    """`signature()` is `published_signature(files)`, read from the kernel's change queue instead of the disk."""

    def __init__(self, files: dict[str, Path | str]):
        self.files = {name: str(path) for name, path in files.items()}
        self._lock = threading.Lock()  # the check runs on the event loop and in site rebuilds (threads)
        self._fd = -1
        self._pid = -1  # the process that owns the watch (a forked worker watches again)
        self._names: dict[int, set[bytes]] = {}  # watch descriptor -> the watched file names in its folder
        self._buffer = ctypes.create_string_buffer(BUFFER_BYTES)
        self._signature: Signature | None = None
        self._retry_at = 0.0

    def signature(self) -> Signature:
        with self._lock:
            if self._pid != os.getpid() and time.monotonic() >= self._retry_at:
                self._watch()
            if self._pid != os.getpid():
                return published_signature(self.files)
            if self._signature is None or self._changed():
                self._signature = published_signature(self.files)
                if self._linked():
                    self._close()
            return self._signature

    @property
    def watching(self) -> bool:
        """Whether changes are read from the kernel (False: every call stats the files)."""
        return self._pid == os.getpid()

    def _watch(self) -> None:
        """Watch every folder, then forget the signature: it is stat'ed after the watches exist, so no change
        falls between the two."""
        self._close()
        self._retry_at = time.monotonic() + RETRY_SECONDS
        if LIBC is None or self._linked():
            return
        fd = LIBC.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            LOGGER.warning("inotify unavailable (%s): the published files are stat'ed per request", _error())
            return
        names: dict[int, set[bytes]] = {}
        for path in self.files.values():
            folder, name = os.path.split(os.path.abspath(path))
            wd = LIBC.inotify_add_watch(fd, os.fsencode(folder), MASK)
            if wd < 0:
                os.close(fd)
                return  # a folder not there yet: stat per request, try again later
            names.setdefault(wd, set()).add(os.fsencode(name))
        self._fd, self._names, self._pid, self._signature = fd, names, os.getpid(), None

    def _changed(self) -> bool:
        """Whether an event about a watched name (or about a watched folder itself) is queued; drains the queue."""
        changed = False
        while True:
            length = LIBC.read(self._fd, self._buffer, BUFFER_BYTES)
            if length < 0:
                code = ctypes.get_errno()
                if code == errno.EAGAIN:
                    return changed
                if code == errno.EINTR:
                    continue
                raise OSError(code, os.strerror(code))
            data = self._buffer.raw[:length]
            offset = 0
            while offset < length:
                wd, mask, _, size = EVENT.unpack_from(data, offset)
                name = data[offset + EVENT.size : offset + EVENT.size + size].rstrip(b"\0")
                offset += EVENT.size + size
                if mask & FOLDER_GONE:
                    self._close()  # watched again from the next check on
                    self._retry_at = 0.0
                    return True
                changed = changed or name in self._names.get(wd, ())

    def _linked(self) -> bool:
        """A watched file or folder reached through a symbolic link changes without an event in the folder."""
        for path in self.files.values():
            folder = os.path.dirname(os.path.abspath(path))
            if os.path.islink(path) or os.path.realpath(folder) != folder:
                return True
        return False

    def _close(self) -> None:
        if self._fd >= 0:  # in a forked child, its own copy of the parent's descriptor
            os.close(self._fd)
        self._fd, self._pid, self._names = -1, -1, {}


def _error() -> str:
    return os.strerror(ctypes.get_errno())
