"""The domains a layer belongs to, declared once: titles, keywords and how often their sources change.

The catalog validates `domain:` against these, the server titles and keywords its collections and web-map groups
with them, and the pipeline schedules each domain's job by its cadence.
"""

from __future__ import annotations

DOMAINS: dict[str, dict] = {
    "repairs": {
        "title": {"ru": "Ремонты и земляные работы", "en": "Repairs and excavations"},
        "keyword": {"ru": "ремонты", "en": "repairs"},
        "cron": "0 * * * *",
    },
    "closures": {
        "title": {"ru": "Перекрытия и объезды", "en": "Closures and detours"},
        "keyword": {"ru": "перекрытия", "en": "road closures"},
        "cron": "*/10 * * * *",  # closures and outages change within the hour
    },
    "outages": {
        "title": {"ru": "Отключения", "en": "Utility outages"},
        "keyword": {"ru": "отключения", "en": "outages"},
        "cron": "*/10 * * * *",
    },
    "zones": {
        "title": {"ru": "Границы зон", "en": "Zone boundaries"},
        "keyword": {"ru": "зоны", "en": "zones"},
        "cron": "0 3 * * *",  # zones change with elections and reorganisations
    },
    "reference": {
        "title": {"ru": "Справочные слои", "en": "Reference layers"},
        "keyword": {"ru": "справочники", "en": "reference"},
        "cron": "0 2 * * *",
    },
    "coordination": {  # layers derived from the others by rules (conflicts): no sources, no schedule of their own
        "title": {"ru": "Координация работ", "en": "Work coordination"},
        "keyword": {"ru": "координация", "en": "coordination"},
        "cron": None,
    },
}
