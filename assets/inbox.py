"""Files delivered to `inbox/<domain>/`: match them to catalog sources, accept or quarantine them.

Deliver by rename (write `name.part`, then rename): files starting with "." or ending in
.part/.tmp are still being written and are left alone.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from assets.normalize import check_columns
from assets.records import SourceError
from assets.sources import open_source
from layers.catalog import Catalog, SourceSpec
from layers.settings import PathSettings

SHAPEFILE_SIDECARS = (".shp", ".shx", ".dbf", ".prj", ".cpg")
IN_PROGRESS = (".part", ".tmp", ".crdownload")


@dataclass(frozen=True)
class Delivery:
    domain: str
    files: tuple[Path, ...]  # a Shapefile arrives as several files
    source: SourceSpec | None  # None: no source of this domain has this file name
    layers: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.files[0].name

    def digest(self) -> str:
        sha = hashlib.sha256()
        for path in sorted(self.files):
            sha.update(path.suffix.encode())
            sha.update(path.read_bytes())
        return sha.hexdigest()


def _waiting(path: Path) -> bool:
    return path.name.startswith(".") or path.name.endswith(IN_PROGRESS) or not path.is_file()


def find_deliveries(inbox: Path, catalog: Catalog) -> list[Delivery]:
    deliveries = []
    for domain in sorted({spec.domain for spec in catalog.values()}):
        folder = inbox / domain
        if not folder.is_dir():
            continue
        sources: dict[str, tuple[SourceSpec, set[str]]] = {}
        for spec in catalog.values():
            for src in spec.sources if spec.domain == domain else []:
                sources.setdefault(Path(src.path).name, (src, set()))[1].add(spec.id)
        seen: set[Path] = set()
        for path in sorted(p for p in folder.iterdir() if not _waiting(p)):
            if path in seen:
                continue
            if path.suffix.lower() in SHAPEFILE_SIDECARS:
                parts = tuple(p for p in (path.with_suffix(s) for s in SHAPEFILE_SIDECARS) if p.exists())
                if not all(path.with_suffix(s).exists() for s in (".shp", ".shx", ".dbf")):
                    continue  # the rest of the Shapefile is still on its way
                seen.update(parts)
                key = path.with_suffix(".shp").name
            else:
                parts, key = (path,), path.name
            source, layers = sources.get(key, (None, set()))
            deliveries.append(Delivery(domain, parts, source, tuple(sorted(layers))))
    return deliveries


def problem(delivery: Delivery) -> str | None:
    """Why a delivery cannot be used, judged from opening it and its header (row problems become
    rejects in the run); None when it looks right."""
    if delivery.source is None:
        return f"no source of domain {delivery.domain!r} is called {delivery.name!r}"
    main = next(
        (p for p in delivery.files if p.suffix.lower() == Path(delivery.source.path).suffix.lower()), delivery.files[0]
    )
    try:
        with open_source(delivery.source, main, f"inbox/{delivery.domain}/{main.name}") as table:
            check_columns(table, delivery.source)
    except SourceError as error:
        return str(error)
    return None


def _stamp(now: dt.datetime, digest: str, name: str) -> str:
    return f"{now:%Y%m%dT%H%M%S}_{digest[:12]}_{name}"


def accept(delivery: Delivery, paths: PathSettings, digest: str, now: dt.datetime) -> None:
    """Make the delivery the live copy of its source (atomically), then archive the original."""
    target = paths.live_dir / delivery.source.path
    target.parent.mkdir(parents=True, exist_ok=True)
    for path in delivery.files:
        live = target.with_suffix(path.suffix)
        staging = live.with_name(f".{live.name}.part")
        shutil.copyfile(path, staging)
        os.replace(staging, live)
    archive(delivery, paths.archive_dir / delivery.domain, digest, now)


def _free(folder: Path, name: str) -> Path:
    """`name` in `folder`, numbered when an identical re-delivery in the same second took it."""
    candidate, number = folder / name, 1
    while candidate.exists():
        number += 1
        candidate = folder / f"{number}_{name}"
    return candidate


def archive(delivery: Delivery, folder: Path, digest: str, now: dt.datetime, reason: str | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for path in delivery.files:
        shutil.move(path, _free(folder, _stamp(now, digest, path.name)))
    if reason:
        _free(folder, _stamp(now, digest, delivery.name + ".reason.txt")).write_text(reason + "\n", encoding="utf-8")


def quarantine(delivery: Delivery, paths: PathSettings, digest: str, now: dt.datetime, reason: str) -> None:
    archive(delivery, paths.quarantine_dir / delivery.domain, digest, now, reason)
