"""Files delivered to `inbox/<domain>/`: match them to catalog sources, judge, stage, archive or quarantine them.

Deliver by rename (write `name.part`, then rename): files starting with "." or ending in
.part/.tmp are still being written and are left alone.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from assets.normalize import check_columns
from assets.records import SourceError
from assets.sources import open_source
from layers.catalog import Catalog, SourceSpec
from layers.settings import PathSettings

SHAPEFILE_SIDECARS = (".shp", ".shx", ".dbf", ".prj", ".cpg")
SHAPEFILE_REQUIRED = (".shp", ".shx", ".dbf")
IN_PROGRESS = (".part", ".tmp", ".crdownload")
MAX_REASON_CHARS = 500


class InboxSettings(BaseSettings):
    """How long the inbox waits for the rest of a Shapefile, and before requesting a failed run again."""

    model_config = SettingsConfigDict(env_prefix="GEOPORTAL_INBOX_", frozen=True)

    shapefile_grace_seconds: float = 300.0
    # A run that failed before it started is requested again after this long (the daemon reloads the code
    # location every minute, so a fixed code error is picked up by then).
    retry_seconds: float = 60.0


@dataclass(frozen=True)
class Delivery:
    domain: str
    files: tuple[Path, ...]  # a Shapefile arrives as several files
    source: SourceSpec | None  # None: no source of this domain matches this file name
    layers: tuple[str, ...]
    missing: tuple[str, ...] = ()  # required Shapefile parts that never came (after the grace period)

    @property
    def name(self) -> str:
        return self.files[0].name

    @property
    def live_name(self) -> str:
        """Where the delivery goes under `live/`: the source's folder and the delivered file name
        (a file set's source path is a glob; a Shapefile is named by its .shp)."""
        main = self.main_file()
        name = main.with_suffix(".shp").name if main.suffix.lower() in SHAPEFILE_SIDECARS else main.name
        return (Path(self.source.path).parent / name).as_posix() if self.source else name

    def main_file(self) -> Path:
        """The file the source's reader opens (the .shp of a Shapefile)."""
        wanted = Path(self.source.path).suffix.lower() if self.source else ""
        return next((p for p in self.files if p.suffix.lower() == wanted), self.files[0])

    def digest(self) -> str:
        sha = hashlib.sha256()
        for path in sorted(self.files):
            sha.update(path.suffix.encode())
            sha.update(path.read_bytes())
        return sha.hexdigest()

    def run_key(self, digest: str) -> str:
        """Stable while the file waits in the inbox (a retried request gets the same key, so Dagster never
        starts it twice); a later re-delivery of the same content has a new modification time."""
        stamp = max(path.stat().st_mtime_ns for path in self.files)
        return f"inbox:{self.live_name}@{digest[:16]}@{stamp}"


def _waiting(path: Path) -> bool:
    return path.name.startswith(".") or path.name.endswith(IN_PROGRESS) or not path.is_file()


def _domain_sources(catalog: Catalog, domain: str) -> dict[str, tuple[SourceSpec, set[str]]]:
    """{file-name pattern: (source, layers it feeds)} for one domain; a pattern may be a glob (file sets)."""
    sources: dict[str, tuple[SourceSpec, set[str]]] = {}
    for spec in catalog.values():
        for src in spec.sources if spec.domain == domain else []:
            sources.setdefault(Path(src.path).name, (src, set()))[1].add(spec.id)
    return sources


def match_source(name: str, sources: dict[str, tuple[SourceSpec, set[str]]]) -> tuple[SourceSpec | None, set[str]]:
    """The source a delivered file name belongs to: its exact name first, then the first glob that matches."""
    if name in sources:
        return sources[name]
    pattern = next((p for p in sorted(sources) if fnmatch.fnmatchcase(name, p)), None)
    return sources[pattern] if pattern else (None, set())


def find_deliveries(inbox: Path, catalog: Catalog, grace_seconds: float, now: float | None = None) -> list[Delivery]:
    """Complete deliveries, and Shapefile sets still missing a required part after `grace_seconds` (to
    be quarantined); a younger incomplete set is still arriving and is left for a later look."""
    now = time.time() if now is None else now
    deliveries = []
    for domain in sorted({spec.domain for spec in catalog.values()}):
        folder = inbox / domain
        if not folder.is_dir():
            continue
        sources = _domain_sources(catalog, domain)
        seen: set[Path] = set()
        for path in sorted(p for p in folder.iterdir() if not _waiting(p)):
            if path in seen:
                continue
            missing: tuple[str, ...] = ()
            if path.suffix.lower() in SHAPEFILE_SIDECARS:
                parts = tuple(p for p in (path.with_suffix(s) for s in SHAPEFILE_SIDECARS) if p.is_file())
                seen.update(parts)
                missing = tuple(s for s in SHAPEFILE_REQUIRED if not path.with_suffix(s).is_file())
                if missing and now - max(p.stat().st_mtime for p in parts) < grace_seconds:
                    continue  # the rest of the Shapefile is still on its way
                key = path.with_suffix(".shp").name
            else:
                parts, key = (path,), path.name
            source, layers = match_source(key, sources)
            deliveries.append(Delivery(domain, parts, source, tuple(sorted(layers)), missing))
    return deliveries


def problem(delivery: Delivery) -> str | None:
    """Why a delivery cannot be used, judged from opening it and its header (row problems become
    rejects in the run); None when it looks right."""
    if delivery.missing:
        have = ", ".join(p.name for p in delivery.files)
        return (
            f"incomplete Shapefile {Path(delivery.name).stem}: missing {', '.join(delivery.missing)} "
            f"(delivered: {have}); deliver all parts, the .shp, .shx and .dbf at least"
        )
    if delivery.source is None:
        return f"no source of domain {delivery.domain!r} is called {delivery.name!r}"
    main = delivery.main_file()
    try:
        with open_source(delivery.source, main, f"inbox/{delivery.domain}/{main.name}") as table:
            check_columns(table, delivery.source)
    except SourceError as error:
        return str(error)
    return None


def judge(delivery: Delivery) -> str | None:
    """`problem`, and any other failure of a reader on this file as its reason: a file that breaks a reader in
    an unforeseen way (a GeoJSON nested 100 000 deep, a UTF-16 or binary "CSV") is quarantined like any other
    unusable file, so it can neither stall the other deliveries nor be retried forever."""
    try:
        return problem(delivery)
    except RecursionError:
        return f"inbox/{delivery.domain}/{delivery.name}: nested too deeply to read (RecursionError)"
    except Exception as error:  # noqa: BLE001 - whatever a reader raises, it is this file's problem
        detail = f"{type(error).__name__}: {error}"[:MAX_REASON_CHARS]
        return f"inbox/{delivery.domain}/{delivery.name}: cannot be read ({detail})"


def _stamp(now: dt.datetime, digest: str, name: str) -> str:
    return f"{now:%Y%m%dT%H%M%S}_{digest[:12]}_{name}"


def stage(delivery: Delivery, paths: PathSettings) -> Path:
    """Make the delivery the live copy of its source (each file swapped in atomically); the original
    stays in the inbox until a run that publishes it exists."""
    target = paths.live_dir / delivery.live_name
    target.parent.mkdir(parents=True, exist_ok=True)
    for path in delivery.files:
        live = target.with_suffix(path.suffix)
        staging = live.with_name(f".{live.name}.part")
        shutil.copyfile(path, staging)
        os.replace(staging, live)
    return target


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
