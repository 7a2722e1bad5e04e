"""Coordination keys of the catalog: zones that answer for events (`responsibility:`) and conflict rules (`rules:`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator

# catalog.py imports this module after defining these, so the models share its strictness and texts
from layers.catalog import IDENTIFIER, FieldSpec, Strict, Text

if TYPE_CHECKING:
    from layers.catalog import LayerSpec

# the fields every conflict carries (declared with their titles in the rules layer's YAML)
CONFLICT_FIELDS = (
    "conflict_id",
    "rule",
    "layer_a",
    "id_a",
    "party_a",
    "layer_b",
    "id_b",
    "party_b",
    "start_time",
    "end_time",
    "detail",
)


class Responsibility(Strict):
    """A zone layer that answers for what happens inside it: every event layer gets the named fields of the
    zones each event touches, as `<prefix>_<field>` (a field already starting with the prefix keeps its name:
    `district_no`, `district_deputy_name`)."""

    prefix: str
    fields: list[str] = Field(min_length=1)

    @field_validator("prefix")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not IDENTIFIER.match(value):
            raise ValueError(f"{value!r} is not a lower-case identifier")
        return value

    def carried(self, name: str) -> str:
        return name if name.startswith(f"{self.prefix}_") else f"{self.prefix}_{name}"


class Nearby(Strict):
    """Features of these layers within this many metres."""

    layers: list[str] = Field(min_length=1)
    within_m: float = Field(ge=0)


# what each kind needs besides `layers` (and what it must not have: a key of another kind is a mistake)
RULE_KEYS = {
    "overlap": {"buffer_m"},
    "uncovered": {"covered_by", "on", "group_by"},
    "too_long": {"max_days"},
    "after_resurfacing": {"resurfaced", "years"},
}
REQUIRED_KEYS = {"overlap": {"buffer_m"}, "uncovered": {"covered_by"}, "too_long": {"max_days"},
                 "after_resurfacing": {"resurfaced", "years"}}  # fmt: skip


class ConflictRule(Strict):
    """One rule of the conflicts layer. Kinds:
    - `overlap`: two events of `layers` within `buffer_m` of each other whose periods overlap;
    - `uncovered`: an event of `layers` (only those within `on` of its layers, if given: a carriageway) with
      no event of `covered_by` within its distance in an overlapping period; `group_by` judges the events
      sharing that field's value together (the buildings of one notice);
    - `too_long`: an event lasting more than `max_days` (an event without an end is not judged);
    - `after_resurfacing`: an event within `resurfaced.within_m` of a resurfacing that ended less than `years`
      before it starts; skipped while no layer of `resurfaced.layers` is in the catalog."""

    id: str
    title: Text
    kind: Literal["overlap", "uncovered", "too_long", "after_resurfacing"]
    layers: list[str] = Field(min_length=1)
    where: dict[str, list[str]] = Field(default_factory=dict)  # only events whose field has one of the values
    buffer_m: float | None = Field(default=None, ge=0)
    on: Nearby | None = None
    covered_by: Nearby | None = None
    group_by: str | None = None
    max_days: float | None = Field(default=None, gt=0)
    resurfaced: Nearby | None = None
    years: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _keys_of_its_kind(self) -> ConflictRule:
        if not IDENTIFIER.match(self.id):
            raise ValueError(f"rule id {self.id!r} is not a lower-case identifier")
        given = {key for key in set().union(*RULE_KEYS.values()) if getattr(self, key) is not None}
        missing = REQUIRED_KEYS[self.kind] - given
        foreign = given - RULE_KEYS[self.kind]
        if missing:
            raise ValueError(f"rule {self.id} ({self.kind}) needs {sorted(missing)}")
        if foreign:
            raise ValueError(f"rule {self.id} ({self.kind}) does not take {sorted(foreign)}")
        return self

    @property
    def named_layers(self) -> set[str]:
        nearby = [n for n in (self.on, self.covered_by, self.resurfaced) if n is not None]
        return set(self.layers).union(*(n.layers for n in nearby))

    @property
    def optional_layers(self) -> set[str]:
        """Layers whose absence skips the rule instead of being a catalog mistake."""
        return set(self.resurfaced.layers) if self.resurfaced else set()


def is_event_layer(spec: LayerSpec) -> bool:
    """Layers with a period that are not zones, registers or derived: repairs, closures, detours, outages."""
    return spec.temporal is not None and not spec.rules and spec.domain not in ("zones", "reference")


def carried_fields(zone: LayerSpec) -> list[FieldSpec]:
    """The fields a responsibility zone layer adds to every event layer: text (several zones are joined,
    "7, 8"), internal when the zone's field or the zone layer is."""
    assert zone.responsibility is not None
    hidden = zone.access == "internal"
    return [
        FieldSpec(
            name=zone.responsibility.carried(name),
            type="string",
            title=zone.field(name).title,
            internal=hidden or zone.field(name).internal,
        )
        for name in zone.responsibility.fields
    ]


def responsible_zones(layers: Mapping[str, LayerSpec]) -> list[LayerSpec]:
    return [spec for spec in layers.values() if spec.responsibility is not None]


def with_carried_fields(layers: dict[str, LayerSpec]) -> tuple[dict[str, LayerSpec], list[str]]:
    """Every event layer with the fields of the responsibility zones appended; problems as (layer, text)."""
    zones, problems, result = responsible_zones(layers), [], dict(layers)
    added = [(zone.id, field) for zone in zones for field in carried_fields(zone)]
    names = [field.name for _, field in added]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append((zones[0].id, f"responsibility: two zone layers carry a field called {name!r}"))
    for spec in layers.values():
        if not is_event_layer(spec) or not added:
            continue
        clash = sorted({field.name for _, field in added} & {f.name for f in spec.fields})
        if clash:
            problems.append((spec.id, f"fields {clash} are carried from responsibility zones; rename them"))
            continue
        result[spec.id] = spec.model_copy(update={"fields": [*spec.fields, *(field for _, field in added)]})
    return result, problems


def rule_problems(spec: LayerSpec, layers: Mapping[str, LayerSpec]) -> list[str]:
    """What a rules layer names that the catalog lacks (its own layer ids, fields of `where` and `group_by`)."""
    problems = []
    missing_fields = sorted(set(CONFLICT_FIELDS) - {f.name for f in spec.fields})
    if missing_fields:
        problems.append(f"fields: a rules layer declares {list(CONFLICT_FIELDS)}; missing {missing_fields}")
    for party_layer, field in spec.parties.items():
        if party_layer in layers and field not in {f.name for f in layers[party_layer].fields}:
            problems.append(f"parties.{party_layer}: {field!r} is not a field of {party_layer}")
    for number, rule in enumerate(spec.rules):
        unknown = sorted(rule.named_layers - rule.optional_layers - set(layers))
        if unknown:
            problems.append(f"rules.{number} ({rule.id}): layers {unknown} are not in the catalog")
            continue
        for layer_id in rule.layers:
            known = {f.name for f in layers[layer_id].fields}
            if layers[layer_id].temporal is None:
                problems.append(f"rules.{number} ({rule.id}): {layer_id} has no period (temporal)")
            for name in [*rule.where, *([rule.group_by] if rule.group_by else [])]:
                if name not in known:
                    problems.append(f"rules.{number} ({rule.id}): {name!r} is not a field of {layer_id}")
    return problems


def upstream_layers(spec: LayerSpec, layers: Mapping[str, LayerSpec]) -> set[str]:
    """The layers a layer is built from besides its files: its address register, the zones that tag its
    events, the event layers its rules read. Each is a Dagster dependency."""
    result = set(spec.geocode_layers)
    if is_event_layer(spec):
        result |= {zone.id for zone in responsible_zones(layers)}
    for rule in spec.rules:
        result |= rule.named_layers & set(layers)
    return result - {spec.id}


def downstream_ingested(changed: set[str], layers: Mapping[str, LayerSpec]) -> set[str]:
    """`changed` plus every layer read from files that is built on them, transitively: a new address register
    re-geocodes, new zones re-tag the events. Rules layers are left to their own automation."""
    result = set(changed)
    while True:
        more = {spec.id for spec in layers.values() if spec.sources and upstream_layers(spec, layers) & result} - result
        if not more:
            return result
        result |= more
