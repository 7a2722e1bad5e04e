"""JSON documents as sources: loading with one-line errors, values by dotted path, cells from lists."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from assets.records import SourceError

MISSING = object()


def load_document(path: Path, source: str, encoding: str = "utf-8") -> Any:
    """The parsed document; any way it can be unusable is a SourceError with one line. JSON is UTF-8
    (RFC 8259), but a municipal export may be cp1251: the catalog's `encoding` says so."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise SourceError(source, f"cannot read the file: {exc.strerror}") from None
    try:
        utf8 = encoding.lower().replace("_", "-") in ("utf-8", "utf8", "utf-8-sig")
        return json.loads(text.decode("utf-8-sig" if utf8 else encoding))
    except UnicodeDecodeError as exc:
        raise SourceError(source, f"not {encoding} text (byte {exc.start}): not a JSON document") from None
    except LookupError:
        raise SourceError(source, f"unknown encoding {encoding!r}") from None
    except json.JSONDecodeError as exc:
        raise SourceError(source, f"not a JSON document: {exc}") from None
    except RecursionError:
        raise SourceError(source, "not a usable JSON document: nested too deeply to read") from None


def value_at(document: Any, path: str) -> Any:
    """The value at a dotted path (`core_details.direction`); through a list, the path applies to
    every element and the results are gathered (`lanes.status` → ["open", "closed"]). MISSING when
    the path is absent (unlike null, which is a value)."""
    if not path:
        return document
    head, _, rest = path.partition(".")
    if isinstance(document, dict):
        return value_at(document[head], rest) if head in document else MISSING
    if isinstance(document, list):
        found = [value_at(item, path) for item in document]
        gathered: list[Any] = []
        for item in found:
            if item is MISSING:
                continue
            # a list inside a list (`lanes.restrictions.type`) reads as one list of all the values
            gathered.extend(item if isinstance(item, list) else [item])
        return gathered if any(item is not MISSING for item in found) else MISSING
    return MISSING


def paths_of(document: Any, prefix: str = "") -> Iterator[str]:
    """Every dotted path `value_at` can resolve in this document: each key at every depth, also
    through lists of objects."""
    if isinstance(document, dict):
        for key, value in document.items():
            path = f"{prefix}{key}"
            yield path
            yield from paths_of(value, path + ".")
    elif isinstance(document, list):
        for item in document:
            if isinstance(item, dict):
                yield from paths_of(item, prefix)


def all_paths(documents: Iterable[Any]) -> list[str]:
    """The paths of many records, in first-seen order."""
    seen: dict[str, None] = {}
    for document in documents:
        seen.update(dict.fromkeys(paths_of(document)))
    return list(seen)


def as_cell(value: Any, separator: str | None = None) -> Any:
    """What a table cell holds: scalars as they are; a list or object as JSON text (nothing lost),
    or a list as its items joined with `separator` when the catalog asks for readable text."""
    if value is MISSING:
        return None
    if isinstance(value, list) and separator is not None:
        items = [as_cell(item) for item in value if item is not None]
        return separator.join(str(item) for item in items) or None
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return value
