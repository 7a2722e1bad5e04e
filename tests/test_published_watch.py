"""The published files' signature read from the kernel's change queue is the one one stat per file gives, at once:
after a rename over a file, a new file, a deletion, a write or a touch in place, with no wait in between; and it is
not stat'ed again while nothing changed (the same tuple comes back)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from server.published.files import published_signature
from server.published.watch import WatchedFiles


def _write(path: Path, content: bytes) -> None:
    """As the pipeline publishes: a new file beside, renamed over the served one (a new inode)."""
    aside = path.with_name(f".{path.name}.part")
    aside.write_bytes(content)
    os.replace(aside, path)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    folder = tmp_path / "published"
    folder.mkdir()
    _write(folder / "repairs.gpkg", b"first")
    _write(folder / "outages.gpkg", b"first")
    return folder


def _files(folder: Path) -> dict[str, Path]:
    return {name: folder / f"{name}.gpkg" for name in ("repairs", "outages", "detours")}  # detours: not published


def _rename_over(folder: Path) -> None:
    _write(folder / "repairs.gpkg", b"second")


def _same_size_rename(folder: Path) -> None:
    _write(folder / "repairs.gpkg", b"firsT")


def _first_publication(folder: Path) -> None:
    _write(folder / "detours.gpkg", b"new")


def _deletion(folder: Path) -> None:
    (folder / "outages.gpkg").unlink()


def _write_in_place(folder: Path) -> None:
    with open(folder / "outages.gpkg", "ab") as file:
        file.write(b"more")


def _touch(folder: Path) -> None:
    os.utime(folder / "repairs.gpkg", ns=(1, 1))


def _moved_away(folder: Path) -> None:
    os.replace(folder / "repairs.gpkg", folder / "repairs.old")


@pytest.mark.parametrize(
    "change",
    [_rename_over, _same_size_rename, _first_publication, _deletion, _write_in_place, _touch, _moved_away],
)
def test_the_next_signature_after_a_change_is_the_stat_one(folder: Path, change: Callable[[Path], None]) -> None:
    watched = WatchedFiles(_files(folder))
    before = watched.signature()
    assert watched.watching
    assert before == published_signature(_files(folder))
    change(folder)
    after = watched.signature()  # no wait: the kernel queued the event before the change's system call returned
    assert after == published_signature(_files(folder)) != before
    assert watched.signature() is after


def test_nothing_is_stated_again_while_nothing_changes(folder: Path) -> None:
    watched = WatchedFiles(_files(folder))
    first = watched.signature()
    (folder / ".repairs.gpkg.part").write_bytes(b"a publication being written beside")
    (folder / "unrelated.txt").write_bytes(b"x")
    assert watched.signature() is first
    assert watched.signature() is first


def test_every_change_of_a_series_is_seen(folder: Path) -> None:
    watched = WatchedFiles(_files(folder))
    for round_ in range(50):
        _write(folder / "repairs.gpkg", str(round_).encode() * (round_ % 3 + 1))
        assert watched.signature() == published_signature(_files(folder)), round_


def test_a_folder_replaced_as_a_whole_is_watched_again(folder: Path) -> None:
    watched = WatchedFiles(_files(folder))
    watched.signature()
    shutil.move(folder, folder.with_name("old"))
    assert watched.signature() == published_signature(_files(folder)) == (None, None, None)
    folder.mkdir()
    _write(folder / "repairs.gpkg", b"again")
    assert watched.signature() == published_signature(_files(folder))  # stat'ed while the watch is set up again


def test_a_folder_not_there_yet_is_stated_until_it_can_be_watched(tmp_path: Path) -> None:
    folder = tmp_path / "later"
    watched = WatchedFiles(_files(folder))
    assert watched.signature() == (None, None, None)
    assert not watched.watching
    folder.mkdir()
    _write(folder / "repairs.gpkg", b"first")
    assert watched.signature() == published_signature(_files(folder))


def test_files_behind_a_symbolic_link_are_stated_every_time(folder: Path, tmp_path: Path) -> None:
    """The target of a link changes without an event in the watched folder: no watch, one stat per call."""
    elsewhere = tmp_path / "releases"
    elsewhere.mkdir()
    _write(elsewhere / "v1.gpkg", b"one")
    (folder / "repairs.gpkg").unlink()
    (folder / "repairs.gpkg").symlink_to(elsewhere / "v1.gpkg")
    watched = WatchedFiles(_files(folder))
    assert watched.signature() == published_signature(_files(folder))
    assert not watched.watching
    _write(elsewhere / "v1.gpkg", b"two, elsewhere")
    assert watched.signature() == published_signature(_files(folder))


def test_a_file_that_becomes_a_symbolic_link_is_stated_every_time(folder: Path, tmp_path: Path) -> None:
    watched = WatchedFiles(_files(folder))
    watched.signature()
    target = tmp_path / "v2.gpkg"
    _write(target, b"two")
    link = folder / ".link"
    link.symlink_to(target)
    os.replace(link, folder / "repairs.gpkg")
    assert watched.signature() == published_signature(_files(folder))
    assert not watched.watching
    _write(target, b"three, elsewhere")
    assert watched.signature() == published_signature(_files(folder))


def test_a_folder_reached_through_a_link_is_stated_every_time(folder: Path, tmp_path: Path) -> None:
    link = tmp_path / "current"
    link.symlink_to(folder)
    watched = WatchedFiles(_files(link))
    assert watched.signature() == published_signature(_files(link))
    assert not watched.watching
