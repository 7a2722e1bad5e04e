"""Our ingest (`build_layer` + `publish_layer`) against `ogr2ogr` on a large synthetic Irkutsk.

Run: `.venv/bin/python benchmarks/bench_ingest.py [--scale 1.0] [--repeat 1] [--layers repairs,...]`;
`--profile` profiles our ingest per layer with cProfile instead of timing it (try `--scale 0.1`).
The city (1M repair points, 200k closure lines, 20k zone polygons at scale 1) is generated once per
scale into `benchmarks/out/synthetic_city/`, the benchmark catalog into `benchmarks/out/catalog/`,
results into `benchmarks/out/ingest.json`. Each measurement runs in its own process, so its peak RSS
is that process's alone (os.wait4); our figure includes the interpreter and its imports.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "benchmarks"
OUT = BENCH / "out"
CATALOG_DIR = OUT / "catalog"
CITY_DIR = OUT / "synthetic_city"
WORK = OUT / "ingest"  # per scale: published files, rejects, ogr2ogr outputs, logs, profiles
RESULTS = OUT / "ingest.json"
CITY_YAML = REPO / "layers" / "_city.yaml"
# The address register is benchmarked too: repairs geocode their address-only rows against it,
# so it is published first whenever repairs are measured.
LAYERS = ["addresses", "repairs", "road_closures", "election_districts"]

sys.path.insert(0, str(BENCH))
from synthetic_city import FILES, WKT_COLUMN, SyntheticCity, ensure_city  # noqa: E402

HEADER_NOTE = """\
ogr2ogr only parses, reprojects (same proj4, same towgs84) and writes a GeoPackage with an R-tree.
Ours also decodes cp1251 (GDAL's CSV driver takes the bytes as UTF-8), maps Russian values to codes,
types every field, writes a reject table with reasons, repairs invalid geometries, fits the layer's
geometry type, checks the city extent, geocodes address-only repairs, joins deputies to districts,
drops duplicate ids and derives stable fids. The ratio is the price of that validation."""

# ---------------------------------------------------------------- the benchmark catalog
# Modelled on layers/addresses.yaml, repairs.yaml, road_closures.yaml (municipal CSV source only)
# and election_districts.yaml; source paths are relative to the synthetic city's folder.

CATALOG = {
    "addresses": """\
title: {ru: Адресный реестр, en: Address register}
description: {ru: Синтетический адресный реестр, en: Synthetic address register}
domain: reference
geometry_type: Point
id_field: address_id
access: internal
fields:
  - {name: address_id, type: string, required: true, title: {ru: Код адреса, en: Address id}}
  - {name: street, type: string, required: true, title: {ru: Улица, en: Street}}
  - {name: house, type: string, required: true, title: {ru: Дом, en: House}}
  - {name: full_address, type: string, title: {ru: Адрес, en: Address}}
  - {name: city_district, type: string, title: {ru: Район города, en: City district}}
  - {name: floors, type: integer, title: {ru: Этажность, en: Floors}}
sources:
  - path: %(addresses)s
    format: csv
    encoding: utf-8
    delimiter: ";"
    crs: msk38-3
    columns: {Код: address_id, Улица: street, Дом: house, Адрес: full_address, Район: city_district, Этажность: floors}
    geometry: {x: X, y: Y, axis_order: northing_easting}
""",
    "repairs": """\
title: {ru: Ремонт инженерных сетей и земляные работы, en: Utility network repairs and earthworks}
description: {ru: Синтетические ордера на земляные работы, en: Synthetic earthworks permits}
domain: repairs
geometry_type: Point
id_field: permit_id
temporal: {start: start_time, end: end_time}
fields:
  - {name: permit_id, type: string, required: true, title: {ru: Номер ордера, en: Permit number}}
  - {name: network, type: string, required: true, allowed: [heat, water, sewer, power, gas, telecom], title: {ru: Вид сетей, en: Network}}
  - {name: work_kind, type: string, required: true, allowed: [planned, emergency], title: {ru: Вид работ, en: Kind of work}}
  - {name: status, type: string, required: true, allowed: [issued, active, completed, suspended], title: {ru: Статус, en: Status}}
  - {name: address, type: string, title: {ru: Адрес, en: Address}}
  - {name: contractor, type: string, title: {ru: Подрядчик, en: Contractor}}
  - {name: start_time, type: datetime, required: true, title: {ru: Начало работ, en: Start}}
  - {name: end_time, type: datetime, title: {ru: Окончание работ, en: End}}
  - {name: contractor_phone, type: string, internal: true, title: {ru: Телефон подрядчика, en: Contractor phone}}
  - {name: notes, type: string, internal: true, title: {ru: Примечание, en: Notes}}
sources:
  - path: %(repairs)s
    format: csv
    encoding: cp1251
    delimiter: ";"
    crs: msk38-3
    columns:
      Номер ордера: permit_id
      Вид сетей: network
      Вид работ: work_kind
      Статус: status
      Адрес: address
      Подрядчик: contractor
      Телефон подрядчика: contractor_phone
      Дата начала: start_time
      Дата окончания: end_time
      Примечание: notes
    values:
      network: {Теплосеть: heat, Тепловые сети: heat, Водопровод: water, Водоснабжение: water, Канализация: sewer,
                Электросети: power, Электроснабжение: power, Газопровод: gas, Газоснабжение: gas, Связь: telecom, Сети связи: telecom}
      work_kind: {Плановые: planned, Плановый ремонт: planned, Аварийные: emergency, Аварийный ремонт: emergency}
      status: {Выдан: issued, Выдано: issued, В работе: active, Ведутся работы: active, Завершено: completed, Закрыт: completed, Приостановлено: suspended}
    geometry: {wkt: %(wkt)s, address: Адрес, geocode: addresses}
""",  # noqa: E501
    "road_closures": """\
title: {ru: Перекрытия дорог, en: Road closures}
description: {ru: Синтетические перекрытия улиц, en: Synthetic street closures}
domain: closures
geometry_type: LineString
id_field: closure_id
temporal: {start: start_time, end: end_time}
fields:
  - {name: closure_id, type: string, required: true, title: {ru: Код перекрытия, en: Closure id}}
  - {name: road_name, type: string, required: true, title: {ru: Улица, en: Road}}
  - {name: closure_type, type: string, required: true, allowed: [full, partial], title: {ru: Тип перекрытия, en: Closure type}}
  - {name: reason, type: string, title: {ru: Причина, en: Reason}}
  - {name: organizer, type: string, title: {ru: Организатор работ, en: Organizer}}
  - {name: start_time, type: datetime, required: true, title: {ru: Начало, en: Start}}
  - {name: end_time, type: datetime, title: {ru: Окончание, en: End}}
  - {name: has_detour, type: boolean, title: {ru: Есть объезд, en: Detour available}}
  - {name: transit_changes, type: string, title: {ru: Изменения маршрутов ОТ, en: Transit route changes}}
  - {name: feed, type: string, required: true, allowed: [wzdx, municipal], title: {ru: Источник, en: Feed}}
sources:
  - path: %(road_closures)s
    format: csv
    encoding: cp1251
    delimiter: ";"
    crs: msk38-3
    date_format: "%%d.%%m.%%Y %%H:%%M"
    columns:
      Номер: closure_id
      Улица: road_name
      Тип перекрытия: closure_type
      Причина: reason
      Организатор: organizer
      Начало: start_time
      Окончание: end_time
      Объезд: has_detour
      Изменение маршрутов ОТ: transit_changes
    values:
      closure_type: {Полное: full, Полное перекрытие: full, Частичное: partial, Частичное перекрытие: partial, Сужение: partial}
    constants: {feed: municipal}
    geometry: {wkt: %(wkt)s}
""",  # noqa: E501
    "election_districts": """\
title: {ru: Избирательные округа, en: Election districts}
description: {ru: Синтетические избирательные округа, en: Synthetic election districts}
domain: zones
geometry_type: MultiPolygon
id_field: district_no
zone_topology: true
fields:
  - {name: district_no, type: integer, required: true, title: {ru: Номер округа, en: District number}}
  - {name: name, type: string, required: true, title: {ru: Наименование, en: Name}}
  - {name: deputy_name, type: string, title: {ru: Депутат, en: Deputy}}
  - {name: deputy_party, type: string, title: {ru: Партия, en: Party}}
  - {name: reception_phone, type: string, title: {ru: Телефон приёмной, en: Reception phone}}
  - {name: reception_hours, type: string, title: {ru: Часы приёма, en: Reception hours}}
sources:
  - path: %(election_districts)s
    format: shapefile
    encoding: cp1251
    crs: msk38-3
    columns: {OKRUG_NO: district_no, NAZVANIE: name}
    joins:
      - path: %(deputies)s
        format: csv
        encoding: cp1251
        delimiter: ";"
        match: {district_no: Номер округа}
        columns: {ФИО депутата: deputy_name, Партия: deputy_party, Телефон приёмной: reception_phone, Часы приёма: reception_hours}
""",  # noqa: E501
}


def write_catalog() -> None:
    CATALOG_DIR.mkdir(parents=True, exist_ok=True)
    shutil.copy(CITY_YAML, CATALOG_DIR / "_city.yaml")
    for layer, text in CATALOG.items():
        (CATALOG_DIR / f"{layer}.yaml").write_text(text % {**FILES, "wkt": WKT_COLUMN}, encoding="utf-8")


def work_dir(scale: float) -> Path:
    # per scale: repairs geocode against the published register, which must be of the same city
    return WORK / f"scale_{scale:g}"


def bench_paths(scale: float):
    from layers.settings import PathSettings

    work = work_dir(scale)
    return PathSettings(root=OUT, catalog_dir=CATALOG_DIR, sample_dir=CITY_DIR / f"scale_{scale:g}",
                        live_dir=work / "live", published_dir=work / "published", rejects_dir=work / "rejects",
                        inbox_dir=work / "inbox", archive_dir=work / "archive", quarantine_dir=work / "quarantine")


# ---------------------------------------------------------------- one measurement, in its own process


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _proc_kib(pid: int, name: str, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _writers(pid: int) -> list[int]:
    """The GeoPackage writers and CSV readers among `pid`'s child processes. Other children are left out: a child
    that has been forked but not yet replaced by its program (`uname`, `ldconfig` run by the standard library) shows
    the parent's whole resident memory as its own."""
    kids = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            continue
    writers = []
    for kid in kids:
        try:
            command = Path(f"/proc/{kid}/cmdline").read_bytes()
            if b"gpkg_writer.py" in command or b"csv_child.py" in command:  # the writer, the CSV reader
                writers.append(kid)
        except OSError:
            continue
    return writers


HIGH_STEP_KIB = 8 * 1024


def _sample_memory(stop, peaks: dict) -> None:
    """The worker's memory with its child processes' (the GeoPackage writer, assets.gpkg_writer; the CSV reader,
    assets.sources.csv_child), while one runs: PSS summed (shared pages, such as the libraries both load, split
    among the processes that map them: what they cost the machine together). Reading a large process's PSS costs
    milliseconds of CPU, charged to the worker: it is read every 0.2 s, and whenever the resident total (RSS: cheap
    to read, every 25 ms) passes the last high by HIGH_STEP_KIB. Read at every new high, it cost the build ~1 s of
    CPU while the CSV reader ran beside it (it grows all along); the peak is now read within HIGH_STEP_KIB."""
    me, last, high = os.getpid(), 0.0, 0
    while not stop.wait(0.025):
        kids = _writers(me)
        if not kids:
            continue
        kids_rss = sum(_proc_kib(k, "status", "VmRSS:") for k in kids)
        rss = _proc_kib(me, "status", "VmRSS:") + kids_rss
        peaks["children_rss"] = max(peaks.get("children_rss", 0), kids_rss)
        if rss > high + HIGH_STEP_KIB or time.monotonic() - last > 0.2:
            high, last = max(high, rss), time.monotonic()
            pss = _proc_kib(me, "smaps_rollup", "Pss:") + sum(_proc_kib(k, "smaps_rollup", "Pss:") for k in kids)
            peaks["pss_sum_with_children"] = max(peaks.get("pss_sum_with_children", 0), pss)


def worker(layer: str, scale: float, result: Path, profile: Path | None) -> None:
    """Ingest one layer as the pipeline does and write the timings and counts to `result`."""
    sys.path.insert(0, str(REPO))
    started = time.perf_counter()
    from assets.ingest import build_layer, publish_layer
    from layers.catalog import load_catalog

    imported, rss_imports = time.perf_counter(), _rss_mb()
    catalog = load_catalog(CATALOG_DIR)
    paths = bench_paths(scale)
    profiler = None
    if profile is not None:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    stop, peaks = threading.Event(), {}
    sampler = threading.Thread(target=_sample_memory, args=(stop, peaks), daemon=True)
    sampler.start()
    # CPU seconds beside wall seconds: on a shared machine the wall clock also counts other processes
    t0, c0 = time.perf_counter(), time.process_time()
    build = build_layer(catalog[layer], catalog, paths)
    t1, c1 = time.perf_counter(), time.process_time()
    rss_build = _peak_rss_mb()
    publish_layer(build, paths)
    t2, c2 = time.perf_counter(), time.process_time()
    children_cpu = os.times().children_user + os.times().children_system  # the GeoPackage writer's
    stop.set()
    sampler.join()
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    counts = build.counts
    result.write_text(json.dumps({
        "build_s": t1 - t0, "publish_s": t2 - t1, "seconds": t2 - t0, "imports_s": imported - started,
        "build_cpu_s": c1 - c0, "publish_cpu_s": c2 - c1, "peak_rss_after_build_mb": rss_build,
        "rss_after_imports_mb": rss_imports, "children_cpu_s": children_cpu,
        "peak_pss_with_children_mb": peaks.get("pss_sum_with_children", 0) / 1024,
        "peak_children_rss_mb": peaks.get("children_rss", 0) / 1024,
        "read": counts.read, "published": counts.published, "rejected": counts.rejected,
        "repaired": counts.repaired, "reject_rows": len(build.rejects), "warnings": build.warnings[:5],
    }))


# Linux carries a process's peak RSS across exec, and a child forked from this (large) process
# starts with this process's RSS: a bare interpreter spawns the measured command and reports its
# rusage, so the figure is the command's own.
LAUNCHER = """
import json, os, sys, time
started = time.perf_counter()
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    json.dump({"wall": time.perf_counter() - started, "maxrss_kib": usage.ru_maxrss,
               "code": os.waitstatus_to_exitcode(status)}, out)
"""


def _measure(command: list[str], log: Path, env: dict[str, str] | None = None) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MB, exit code) of one process."""
    usage = log.with_suffix(".rusage.json")
    usage.unlink(missing_ok=True)
    with open(log, "w", encoding="utf-8") as output:
        subprocess.run([sys.executable, "-S", "-c", LAUNCHER, str(usage), *command],
                       stdout=output, stderr=subprocess.STDOUT, env=env, check=False)
    if not usage.exists():
        return float("nan"), float("nan"), -1
    measured = json.loads(usage.read_text())
    return measured["wall"], measured["maxrss_kib"] / 1024, measured["code"]  # ru_maxrss: KiB on Linux


def run_ours(layer: str, scale: float, run: int) -> dict:
    result = work_dir(scale) / "logs" / f"ours_{layer}_{run}.json"
    result.unlink(missing_ok=True)
    log = work_dir(scale) / "logs" / f"ours_{layer}_{run}.log"
    command = [sys.executable, __file__, "--worker", layer, "--scale", str(scale), "--result", str(result)]
    wall, rss, code = _measure(command, log)
    if code != 0 or not result.exists():
        tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
        raise SystemExit(f"our ingest of {layer} failed (exit {code}), see {log}:\n{tail}")
    measured = json.loads(result.read_text())
    # the most the ingest held at once: the worker's own peak RSS, or, while the GeoPackage writer ran beside it,
    # the two processes' PSS summed (their shared libraries counted once)
    peak = max(rss, measured.get("peak_pss_with_children_mb", 0))
    return {**measured, "process_wall_s": wall, "peak_rss_mb": peak, "peak_worker_rss_mb": rss}


# ---------------------------------------------------------------- the ogr2ogr reference


def find_ogr2ogr(may_install: bool) -> tuple[str | None, str]:
    """(path to ogr2ogr or None, a note for the report)."""
    found = shutil.which("ogr2ogr")
    if found:
        return found, ""
    print("ogr2ogr is not installed (Debian package gdal-bin).")
    if may_install and hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        print("running as root with apt-get: installing gdal-bin ...", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        ok = subprocess.run(["apt-get", "update"], env=env).returncode == 0
        ok = ok and subprocess.run(["apt-get", "install", "-y", "gdal-bin"], env=env).returncode == 0
        found = shutil.which("ogr2ogr")
        if found:
            return found, ""
        failed = "ogr2ogr reference skipped: installing gdal-bin with apt-get failed"
        return None, failed + ("" if ok else " (see above)")
    how = "run as root with apt-get, or" if may_install else "drop --no-install, or"
    return None, f"ogr2ogr reference skipped: ogr2ogr not found ({how} `apt-get install gdal-bin` yourself)"


def ogr2ogr_command(ogr2ogr: str, layer: str, city: SyntheticCity, target: Path) -> list[str]:
    """The same conversion as ours: source in МСК-38 → GeoPackage 1.2 in EPSG:4326 with an R-tree."""
    common = ["-s_srs", city.proj4, "-t_srs", "EPSG:4326", "-nln", layer,
              "-lco", "SPATIAL_INDEX=YES", "-lco", "GEOMETRY_NAME=geom", "-dsco", "VERSION=1.2"]
    source = str(city.path(layer))
    if layer == "election_districts":
        return [ogr2ogr, "-f", "GPKG", str(target), source, "-nlt", "PROMOTE_TO_MULTI", *common]
    csv = ["-oo", "KEEP_GEOM_COLUMNS=NO"]  # GDAL 3.6 detects the `;` separator from the header line
    if layer == "addresses":  # surveyors' X is the northing
        geometry = ["-oo", "X_POSSIBLE_NAMES=Y", "-oo", "Y_POSSIBLE_NAMES=X", "-nlt", "POINT"]
    else:
        # GDAL reads the cp1251 header as bytes, so the Cyrillic column name cannot be matched: a
        # wildcard on its ASCII part finds "Геометрия (WKT)"
        geometry = ["-oo", "GEOM_POSSIBLE_NAMES=*WKT*", "-nlt", "POINT" if layer == "repairs" else "LINESTRING"]
    return [ogr2ogr, "-f", "GPKG", str(target), source, *csv, *geometry, *common]


def run_ogr2ogr(ogr2ogr: str, layer: str, city: SyntheticCity, run: int) -> dict:
    target = work_dir(city.scale) / "ogr2ogr" / f"{layer}.gpkg"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    log = work_dir(city.scale) / "logs" / f"ogr2ogr_{layer}_{run}.log"
    command = ogr2ogr_command(ogr2ogr, layer, city, target)
    wall, rss, code = _measure(command, log, env={**os.environ, "CPL_LOG_ERRORS": "ON"})
    if code != 0 or not target.exists():
        tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
        return {"error": f"ogr2ogr failed (exit {code}), see {log}: {tail}", "command": command}
    # counted with SQL: ogr2ogr copies the cp1251 bytes of the CSV into names and values that are
    # not UTF-8, which GDAL-based readers then refuse to decode
    with sqlite3.connect(target) as db:
        features = db.execute(f'SELECT COUNT(*) FROM "{layer}"').fetchone()[0]
    warnings = sum(1 for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if "Warning" in line)
    return {"seconds": wall, "peak_rss_mb": rss, "features": features, "warnings_logged": warnings,
            "command": command}


# ---------------------------------------------------------------- the report


def _median(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if key in r]
    return statistics.median(values) if values else None


def table(rows: list[dict]) -> str:
    head = ["layer", "features", "ours s", "ogr2ogr s", "ratio", "ours peak MB", "ogr2ogr peak MB"]
    body = []
    for row in rows:
        ours, ref = row["ours"], row.get("ogr2ogr") or {}
        ratio = ours["seconds"] / ref["seconds"] if ref.get("seconds") else None
        body.append([row["layer"], f"{row['features']:,}", f"{ours['seconds']:.1f}",
                     f"{ref['seconds']:.1f}" if ref.get("seconds") else "—", f"{ratio:.1f}×" if ratio else "—",
                     f"{ours['peak_rss_mb']:,.0f}", f"{ref['peak_rss_mb']:,.0f}" if ref.get("peak_rss_mb") else "—"])
    widths = [max(len(str(c)) for c in column) for column in zip(head, *body, strict=True)]
    line = lambda cells: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
    return "\n".join([line(head), line(["-" * w for w in widths]), *(line(b) for b in body)])


def details(rows: list[dict]) -> str:
    out = []
    for row in rows:
        ours, ref = row["ours"], row.get("ogr2ogr") or {}
        out.append(
            f"{row['layer']}: ours build {ours['build_s']:.1f} s + publish {ours['publish_s']:.1f} s "
            f"(CPU {ours.get('build_cpu_s', float('nan')):.1f} + {ours.get('publish_cpu_s', float('nan')):.1f} s; "
            f"peak {ours.get('peak_rss_after_build_mb', float('nan')):,.0f} MB when built; "
            f"with the writer process: CPU {ours.get('children_cpu_s', float('nan')):.1f} s, peak PSS of both "
            f"{ours.get('peak_pss_with_children_mb', float('nan')):,.0f} MB, the writer's own RSS "
            f"{ours.get('peak_children_rss_mb', float('nan')):,.0f} MB) "
            f"(+ {ours['imports_s']:.1f} s imports, {ours['rss_after_imports_mb']:.0f} MB RSS after imports); "
            f"read {ours['read']:,}, published {ours['published']:,}, rejected {ours['rejected']:,}, "
            f"repaired {ours['repaired']:,}"
            + (f"; ogr2ogr wrote {ref['features']:,} features" if "features" in ref else "")
            + (f"; ogr2ogr: {ref['error']}" if "error" in ref else ""))
    return "\n".join(out)


def benchmark(args: argparse.Namespace) -> None:
    layers = [layer.strip() for layer in args.layers.split(",")]
    unknown = set(layers) - set(LAYERS)
    if unknown:
        raise SystemExit(f"unknown layer(s) {sorted(unknown)}; choose from {LAYERS}")
    if "repairs" in layers and "addresses" not in layers:
        layers.insert(0, "addresses")  # repairs geocode against the published register
    city = ensure_city(CITY_DIR, args.scale, CITY_YAML)
    write_catalog()
    for sub in ("logs", "published", "rejects", "profile"):
        (work_dir(args.scale) / sub).mkdir(parents=True, exist_ok=True)

    if args.profile:
        profile(layers, args.scale)
        return

    load = os.getloadavg()[0]
    busy = load > 0.5 * (os.cpu_count() or 1)
    if busy:
        print(f"note: load average {load:.1f} on {os.cpu_count()} CPUs before starting: other processes compete "
              "for the CPU, expect noisy figures (use --repeat)", flush=True)
    if args.no_ogr2ogr:
        ogr2ogr, note = None, "ogr2ogr reference skipped (--no-ogr2ogr)"
    else:
        ogr2ogr, note = find_ogr2ogr(not args.no_install)
    version = subprocess.run([ogr2ogr, "--version"], capture_output=True, text=True).stdout.strip() if ogr2ogr else None
    rows = []
    for layer in layers:
        ours_runs, ref_runs = [], []
        for run in range(args.repeat):
            print(f"[{layer}] run {run + 1}/{args.repeat}: ours ...", end=" ", flush=True)
            ours_runs.append(run_ours(layer, args.scale, run))
            print(f"{ours_runs[-1]['seconds']:.1f} s, {ours_runs[-1]['peak_rss_mb']:.0f} MB", end="", flush=True)
            if ogr2ogr:
                print("; ogr2ogr ...", end=" ", flush=True)
                ref_runs.append(run_ogr2ogr(ogr2ogr, layer, city, run))
                print(f"{ref_runs[-1].get('seconds', float('nan')):.1f} s", end="", flush=True)
            print(flush=True)
        ours = {k: _median(ours_runs, k) for k in ours_runs[0] if isinstance(ours_runs[0][k], (int, float))}
        ours["peak_rss_mb"] = max(r["peak_rss_mb"] for r in ours_runs)
        ref = None
        if ref_runs:
            ok = [r for r in ref_runs if "error" in r] == []
            ref = ({"seconds": _median(ref_runs, "seconds"), "peak_rss_mb": max(r["peak_rss_mb"] for r in ref_runs),
                    "features": ref_runs[0]["features"], "warnings_logged": ref_runs[0]["warnings_logged"],
                    "command": ref_runs[0]["command"]} if ok else ref_runs[0])
        rows.append({"layer": layer, "features": city.counts[layer], "defects": city.defects.get(layer, {}),
                     "ours": ours, "ogr2ogr": ref, "runs": {"ours": ours_runs, "ogr2ogr": ref_runs}})

    load_after = os.getloadavg()[0]
    report = [f"Ingest benchmark: synthetic Irkutsk at scale {args.scale:g} ({city.directory}), "
              f"median of {args.repeat} run(s); {os.cpu_count()} CPUs, load average {load:.1f} before / "
              f"{load_after:.1f} after, Python {platform.python_version()}, {version or 'no ogr2ogr'}",
              HEADER_NOTE, *([note] if note else []), "", table(rows), "", details(rows)]
    print("\n" + "\n".join(report))
    RESULTS.write_text(json.dumps({
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "scale": args.scale, "repeat": args.repeat,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "ogr2ogr": version, "load_average_before": load, "load_average_after": load_after},
        "note": note or None, "layers": rows,
    }, ensure_ascii=False, indent=2), encoding="utf-8")
    print(f"\nresults: {RESULTS}")


def profile(layers: list[str], scale: float) -> None:
    """cProfile of our ingest per layer: the top functions by own time and by cumulative time."""
    import pstats

    for layer in layers:
        target = work_dir(scale) / "profile" / f"{layer}.prof"
        result = work_dir(scale) / "logs" / f"profile_{layer}.json"
        command = [sys.executable, __file__, "--worker", layer, "--scale", str(scale), "--result", str(result),
                   "--profile-to", str(target)]
        log = work_dir(scale) / "logs" / f"profile_{layer}.log"
        wall, rss, code = _measure(command, log)
        if code != 0:
            raise SystemExit(f"profiling {layer} failed, see {log}")
        outcome = json.loads(result.read_text())
        print(f"\n==== {layer}: {outcome['seconds']:.1f} s under cProfile (build {outcome['build_s']:.1f}, "
              f"publish {outcome['publish_s']:.1f}), peak {rss:.0f} MB; {target}")
        stats = pstats.Stats(str(target))
        stats.sort_stats("tottime").print_stats(18)
        stats.sort_stats("cumulative").print_stats(r"assets|layers", 25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 = 1M repairs, 200k closures, 20k zones")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement; the median is reported")
    parser.add_argument("--layers", default=",".join(LAYERS), help=f"comma-separated subset of {LAYERS}")
    parser.add_argument("--no-ogr2ogr", action="store_true", help="time our ingest only")
    parser.add_argument("--no-install", action="store_true", help="never apt-get install gdal-bin")
    parser.add_argument("--profile", action="store_true", help="cProfile our ingest per layer instead of timing it")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--profile-to", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.scale, args.result, args.profile_to)
    else:
        benchmark(args)


if __name__ == "__main__":
    main()
