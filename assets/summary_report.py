"""The daily summary as files: a map drawn by matplotlib (no browser, no network), an HTML page and a PDF."""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on a server
import matplotlib.pyplot as plt  # noqa: E402 - after the backend is chosen
from matplotlib.backends.backend_pdf import PdfPages  # noqa: E402

from assets.publish import PublicationError  # noqa: E402
from assets.summary import COUNTS, DailySummary, district_key, domain_title  # noqa: E402

DOMAIN_COLORS = {"repairs": "#ea580c", "closures": "#b91c1c", "outages": "#7c3aed"}
OTHER_COLOR = "#2563eb"
HEADERS = {"new": "новые", "active": "действуют", "ended": "завершены"}
matplotlib.rcParams["pdf.fonttype"] = 42  # TrueType in the PDF: its text can be searched and extracted
matplotlib.rcParams["font.family"] = "DejaVu Sans"  # ships with matplotlib; has Cyrillic


def draw_map(summary: DailySummary, catalog, axes) -> None:
    """District outlines and the events active at the summary's moment, coloured by domain."""
    west, south, east, north = catalog.city.extent
    if summary.districts is not None and len(summary.districts):
        summary.districts.boundary.plot(ax=axes, color="#64748b", linewidth=0.6)
        summary.districts.plot(ax=axes, color="#f1f5f9", edgecolor="none", zorder=0)
        label = summary.districts.columns[0]  # the district number the tables count by
        for number, point in zip(summary.districts[label], summary.districts.representative_point(), strict=True):
            axes.annotate(str(number), (point.x, point.y), fontsize=7, color="#64748b", ha="center", va="center")
    for layer_id, frame in summary.active_frames.items():
        if not len(frame):
            continue
        color = DOMAIN_COLORS.get(catalog[layer_id].domain, OTHER_COLOR)
        frame.plot(ax=axes, color=color, markersize=6, linewidth=1.6, label=catalog[layer_id].title.ru)
    bounds = summary.districts.total_bounds if summary.districts is not None and len(summary.districts) else None
    if bounds is not None:
        west, south, east, north = bounds
    axes.set_xlim(west, east)
    axes.set_ylim(south, north)
    axes.set_aspect(1 / max(0.1, math.cos(math.radians((south + north) / 2))))  # metres look square
    axes.set_xlabel("")
    axes.set_ylabel("")
    axes.set_xticks([])
    axes.set_yticks([])
    if any(len(frame) for frame in summary.active_frames.values()):
        axes.legend(loc="lower left", fontsize=7, framealpha=0.9)


def map_png(summary: DailySummary, catalog, dpi: int = 110) -> bytes:
    figure, axes = plt.subplots(figsize=(7, 6))
    draw_map(summary, catalog, axes)
    axes.set_title(f"{summary.city}: действуют на {summary.moment.astimezone(_local(catalog)):%d.%m.%Y %H:%M}")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _local(catalog):
    from layers.timewindow import zone

    return zone(catalog.city.timezone)


def _rows(counters: dict, title) -> list[list[str]]:
    return [[title(key), *(str(counters[key][name]) for name in COUNTS)] for key in counters]


def tables(summary: DailySummary) -> list[tuple[str, list[str], list[list[str]]]]:
    """(caption, header, rows) of every table, the same in the HTML and the PDF."""
    found = [
        ("По отраслям", ["Отрасль", *HEADERS.values()], _rows(summary.by_domain, domain_title)),
    ]
    if summary.by_district:
        ordered = {key: summary.by_district[key] for key in sorted(summary.by_district, key=district_key)}
        found.append((f"По зонам: {summary.district_title}", ["Зона", *HEADERS.values()], _rows(ordered, str)))
    if summary.conflicts:
        rows = [[summary.conflict_titles[rule], str(count)] for rule, count in summary.conflicts.items()]
        found.append(("Конфликты работ", ["Правило", "конфликтов"], rows))
    return found


def render_html(summary: DailySummary, png: bytes) -> str:
    parts = [
        "<!doctype html><html lang='ru'><head><meta charset='utf-8'>",
        f"<title>Сводка {summary.city} {summary.day:%d.%m.%Y}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:1em auto}table{border-collapse:collapse;"
        "margin:1em 0}td,th{border:1px solid #cbd5e1;padding:.2em .6em;text-align:right}td:first-child,"
        "th:first-child{text-align:left}</style></head><body>",
        f"<h1>Сводка за {summary.day:%d.%m.%Y} — {html.escape(summary.city)}</h1>",
        f"<p>Новые и завершённые — за сутки с {summary.since:%d.%m.%Y %H:%M} UTC; действующие — на момент сводки.</p>",
    ]
    for caption, header, rows in tables(summary):
        parts.append(f"<h2>{html.escape(caption)}</h2><table><tr>")
        parts.append("".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
        parts.extend("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
        parts.append("</table>")
    parts.append(f"<h2>Карта</h2><img alt='карта' src='data:image/png;base64,{base64.b64encode(png).decode()}'>")
    parts.extend(f"<p class='note'>{html.escape(note)}</p>" for note in summary.notes)
    parts.append("</body></html>")
    return "\n".join(parts)


def _draw_tables(figure, blocks: list[tuple[str, list[str], list[list[str]]]], top: float) -> float:
    """The tables one under another from `top` (figure fraction); returns where the next thing may start."""
    for caption, header, rows in blocks:
        figure.text(0.06, top, caption, fontsize=12, weight="bold")
        height = 0.022 * (len(rows) + 1)
        axes = figure.add_axes([0.06, top - 0.01 - height, 0.88, height])
        axes.axis("off")
        widths = [0.52] + [0.48 / (len(header) - 1)] * (len(header) - 1)
        table = axes.table(cellText=rows, colLabels=header, colWidths=widths, loc="upper left", cellLoc="left")
        table.auto_set_font_size(False)
        table.set_fontsize(9)
        top -= height + 0.06
    return top


def _page(pdf: PdfPages, title: str):
    figure = plt.figure(figsize=(8.27, 11.69))  # A4
    figure.text(0.06, 0.96, title, fontsize=15, weight="bold")
    return figure


def render_pdf(summary: DailySummary, catalog, target: Path) -> None:
    """Page 1: the counts by domain, the conflicts and the map; page 2: the districts."""
    blocks = tables(summary)
    by_zone = [block for block in blocks if block[0].startswith("По зонам")]
    with PdfPages(target) as pdf:
        figure = _page(pdf, f"Сводка за {summary.day:%d.%m.%Y} — {summary.city}")
        top = _draw_tables(figure, [block for block in blocks if block not in by_zone], 0.92)
        draw_map(summary, catalog, figure.add_axes([0.06, 0.04, 0.88, top - 0.06]))
        pdf.savefig(figure)
        plt.close(figure)
        if by_zone:
            figure = _page(pdf, "По зонам")
            _draw_tables(figure, by_zone, 0.92)
            pdf.savefig(figure)
            plt.close(figure)


def write_report(summary: DailySummary, catalog, folder: Path) -> dict[str, Path]:
    """summary.{html,pdf,png,json} under `folder` (data/reports/<date>/), each written aside and renamed."""
    png = map_png(summary, catalog)
    files = {}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, write in (
            ("summary.png", lambda path: path.write_bytes(png)),
            ("summary.html", lambda path: path.write_text(render_html(summary, png), encoding="utf-8")),
            ("summary.pdf", lambda path: render_pdf(summary, catalog, path)),
            ("summary.json", lambda path: path.write_text(json.dumps(summary.as_json(), ensure_ascii=False, indent=1))),
        ):
            temporary = folder / f".{name}.part"
            write(temporary)
            temporary.replace(folder / name)
            files[name] = folder / name
    except OSError as error:
        raise PublicationError(folder, error, "write the daily summary in") from None
    return files
