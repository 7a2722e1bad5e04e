"""A public layer's changes as an Atom 1.0 feed (RFC 4287): one entry per change, public fields only."""

from __future__ import annotations

from datetime import UTC, datetime
from xml.etree import ElementTree as ET

from assets.changes import Change
from assets.publish import stable_fid
from layers.catalog import LayerSpec

ATOM = "http://www.w3.org/2005/Atom"
KIND_WORDS = {
    "ru": {"appeared": "Новое", "changed": "Изменено", "ended": "Снято"},
    "en": {"appeared": "New", "changed": "Changed", "ended": "Removed"},
}


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, f"{{{ATOM}}}{tag}", attributes)
    if text is not None:
        element.text = text
    return element


def _value(spec: LayerSpec, name: str, value: object, language: str) -> str:
    field = spec.field(name)
    labels = field.labels.get(str(value)) if field.labels else None
    return getattr(labels, language) if labels else str(value)


def entry_title(spec: LayerSpec, change: Change, language: str) -> str:
    label = spec.style.label
    name = change.properties.get(label) if label else None
    subject = f"{name} ({change.id})" if name else change.id
    return f"{KIND_WORDS[language][change.kind]}: {getattr(spec.title, language)} — {subject}"


def entry_text(spec: LayerSpec, change: Change, language: str) -> str:
    lines = []
    for field in spec.fields:
        value = change.properties.get(field.name)
        if value is not None and value != "":
            lines.append(f"{getattr(field.title, language)}: {_value(spec, field.name, value, language)}")
    return "\n".join(lines)


def atom_feed(spec: LayerSpec, changes: list[Change], base_url: str, language: str, now: datetime) -> bytes:
    """Newest first. `changes` must already be the public view: public layer, public changes, public fields."""
    ET.register_namespace("", ATOM)
    feed = ET.Element(f"{{{ATOM}}}feed", {"xml:lang": language})
    own = f"{base_url}/feeds/{spec.id}.atom"
    _sub(feed, "id", own)
    _sub(feed, "title", getattr(spec.title, language))
    _sub(feed, "subtitle", getattr(spec.description, language))
    newest = max((c.at for c in changes), default=now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    _sub(feed, "updated", newest)
    _sub(feed, "link", rel="self", type="application/atom+xml", href=own)
    _sub(feed, "link", rel="alternate", type="text/html", href=f"{base_url}/collections/{spec.id}")
    author = _sub(feed, "author")
    _sub(author, "name", base_url)
    for change in sorted(changes, key=lambda c: c.seq, reverse=True):
        entry = _sub(feed, "entry")
        _sub(entry, "id", f"{own}#change-{change.seq}")
        _sub(entry, "title", entry_title(spec, change, language))
        _sub(entry, "updated", change.at)
        _sub(entry, "category", term=change.kind)
        if change.kind != "ended":
            item = f"{base_url}/collections/{spec.id}/items/{stable_fid(spec.id, change.id)}"
            _sub(entry, "link", rel="alternate", type="text/html", href=item)
        _sub(entry, "content", entry_text(spec, change, language), type="text")
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)
