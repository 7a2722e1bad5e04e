"""The bad-input corpus: broken files as cities deliver them, each with the records it holds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Writer = Callable[[Path], None]  # writes the case's files into the sample folder


@dataclass(frozen=True)
class Case:
    """One delivery. `records` is counted by the case's author from what the file holds (rows,
    features, events, addresses a notice lists), never by our readers. `expect` pins the outcome when
    only one is right: "file" (one-line SourceError naming `names`) or "records" (published +
    rejected == records); None accepts either as long as the accounting holds."""

    id: str
    layers: dict[str, str]
    write: Writer
    records: int
    expect: Literal["file", "records"] | None = None
    layer: str = "works"
    names: str = ""  # the file a whole-file message must name (default: the layer's first source)
    published: int | None = None  # when the right number of published records is known
    orphans: int = 0  # rows of joined tables that match no record: rejected from the joined file
    reason: str = ""  # a text the rejects or the one-line message must contain
    prepare: tuple[str, ...] = ()  # layers published first (the address register for notices)


def files(contents: dict[str, bytes]) -> Writer:
    """A writer for literal file contents by relative path."""

    def write(folder: Path) -> None:
        for name, data in contents.items():
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)

    return write


def named(name: str, data: bytes) -> Writer:
    return files({name: data})


def text_lines(lines: list[str], encoding: str = "utf-8", newline: str = "\n") -> bytes:
    return newline.join(lines).encode(encoding)
