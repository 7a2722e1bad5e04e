"""The `/affects` answer as an HTML page for residents, in Russian or English, with the catalog's titles."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import jinja2

from layers.catalog import Catalog
from layers.timewindow import zone
from server.affects.answer import catalog_text

TEMPLATES = Path(__file__).resolve().parent / "templates"
TEXTS = {
    "ru": {
        "title": "Что происходит у моего дома", "address": "Адрес", "placeholder": "ул. Ленина, 5А",
        "search": "Найти", "at": "На момент", "radius": "в радиусе", "metres": "м", "map": "Карта",
        "no_match": "Адрес не найден в адресном реестре", "candidates": "Возможно, вы имели в виду",
        "also": "Адрес назвал и другие дома", "events": "События рядом", "no_events": "Рядом ничего не происходит",
        "active": "идёт", "upcoming": "запланировано", "open_end": "без даты окончания", "covers": "прямо здесь",
        "zones": "Кто отвечает за этот адрес", "yes": "да", "no": "нет",
        "unavailable": "Сейчас не удалось прочитать слои (их событий нет в ответе)",
    },
    "en": {
        "title": "What affects my address", "address": "Address", "placeholder": "ul. Lenina, 5A",
        "search": "Search", "at": "At", "radius": "within", "metres": "m", "map": "Map",
        "no_match": "The address is not in the address register", "candidates": "Did you mean",
        "also": "The address also names", "events": "Events nearby", "no_events": "Nothing is going on nearby",
        "active": "active", "upcoming": "upcoming", "open_end": "no end date", "covers": "right here",
        "zones": "Who answers for this address", "yes": "yes", "no": "no",
        "unavailable": "Layers that could not be read now (their events are missing here)",
    },
}  # fmt: skip
_environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
)


def render_page(answer: dict, catalog: Catalog, language: str, base_url: str) -> str:
    texts = TEXTS[language]
    local = zone(catalog.city.timezone)

    def moment(stored: str | None) -> str:
        if not stored:
            return ""
        try:
            return datetime.fromisoformat(stored).astimezone(local).strftime("%d.%m.%Y %H:%M")
        except ValueError:  # a date-typed layer stores days
            return stored

    def rows(layer_id: str, properties: dict) -> list[tuple[str, str, str]]:
        """(name, title, shown value) of the fields the answer carries, in catalog order with its labels."""
        spec = catalog[layer_id]
        shown = []
        for field in spec.fields:
            if field.name not in properties or properties[field.name] in (None, ""):
                continue
            value = properties[field.name]
            if field.type == "datetime":
                value = moment(value)
            elif field.type == "boolean":
                value = texts["yes"] if value else texts["no"]
            elif field.labels and str(value) in field.labels:
                value = catalog_text(field.labels[str(value)], language) or ""
            shown.append((field.name, catalog_text(field.title, language) or "", str(value)))
        return shown

    heading = answer["building"]["properties"]["address"] if answer.get("building") else answer["query"].get("address")
    return _environment.get_template("affects.html").render(
        answer=answer, t=texts, lang=language, base_url=base_url, moment=moment, rows=rows, heading=heading or ""
    )
