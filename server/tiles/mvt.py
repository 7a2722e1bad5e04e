"""Point and line layers of a Mapbox Vector Tile encoded with numpy, byte for byte as mapbox-vector-tile encodes them.

mapbox-vector-tile builds a protobuf message per feature in Python (~95 µs a feature: most of a street-level tile's
rendering); here a layer's features are one array of integers written as varints at once. What it does is followed
to the byte: coordinates rounded half to even, a line's repeated points and its parts without a second point left
out (a feature left without geometry too, before its attributes count), the cursor carried from part to part,
32-bit zig-zag, keys and values numbered in order of first appearance (booleans apart from numbers, 1 and 1.0 one
value), id only when not negative, fields in the proto's order. Polygons (winding order, repairs) and anything
else unusual are not handled here: `encode_layer` answers None and the caller lets mapbox-vector-tile encode them.
"""

from __future__ import annotations

import itertools
import operator
import struct
from collections.abc import Sequence

import numpy as np
import shapely

_POINT, _LINESTRING, _MULTILINESTRING = 0, 1, 5  # shapely.get_type_id
_MOVE_TO_ONE = (1 << 3) | 1
_LINE_TO = 2
_HANDLED = (str, bool, int, float)  # what mapbox-vector-tile writes as a value; other values are left out
_PLAIN = {str, bool, int, float, type(None)}


def encode_layer(
    name: str,
    ids: np.ndarray,
    geometries: np.ndarray,
    columns: Sequence[tuple[str, Sequence[object]]],
    extent: int,
) -> bytes | None:
    """The layer as a serialised `Tile` holding only it (tiles' layers concatenate); None when not handled here.

    `ids`: the feature ids (int64); `geometries`: non-empty shapely geometries in tile units, y down, or the points'
    coordinates (n x 2); `columns`: (key, the features' values, None where absent), in the order of each feature's
    properties."""
    types = shapely.get_type_id(geometries) if geometries.dtype == object else None  # None: points' coordinates
    kept = np.ones(len(geometries), dtype=bool)
    feature_type = 1
    if types is None:
        values, counts = _points(geometries)
    elif len(types) and (types == _POINT).all():
        values, counts = _points(shapely.get_coordinates(geometries))
    elif len(types) and np.isin(types, (_LINESTRING, _MULTILINESTRING)).all():
        lines = _lines(geometries)
        if lines is None:
            return None
        values, counts = lines
        kept = counts > 0
        counts = counts[kept]
        feature_type = 2
    else:
        return None
    ids = np.asarray(ids, dtype=np.int64)[kept]
    keep = np.flatnonzero(kept)
    tags, tag_counts, keys, table = _tags(columns, keep)
    body = _features(ids, tags, tag_counts, values, counts, feature_type)
    parts = [_field_bytes(1, name.encode()), body]
    parts += [_field_bytes(3, key.encode()) for key in keys]
    parts.append(_values_table(table))
    parts.append(b"\x28" + _varint(extent) + b"\x78\x02")  # extent (5), version 2 (15)
    layer = b"".join(parts)
    return b"\x1a" + _varint(len(layer)) + layer


def _points(coordinates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per point: MoveTo(1), x, y (zig-zag, from the origin)."""
    xy = np.rint(coordinates).astype(np.int64)
    values = np.empty((len(xy), 3), dtype=np.int64)
    values[:, 0] = _MOVE_TO_ONE
    values[:, 1:] = _zigzag(xy)
    return values.ravel(), np.full(len(xy), 3, dtype=np.int64)


def _lines(geometries: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Per feature, each part with a second distinct (rounded) point: MoveTo(1) dx dy, LineTo(n) n × (dx dy), deltas
    from the last point written (the origin first). Returns the values and how many each feature has (0: none)."""
    parts, owner = shapely.get_parts(geometries, return_index=True)
    coordinates, part_of = shapely.get_coordinates(parts, return_index=True)
    if len(parts) == 0 or np.bincount(part_of, minlength=len(parts)).min() == 0:
        return None  # an empty part: mapbox-vector-tile fails on it, let it say so
    xy = np.rint(coordinates).astype(np.int64)
    first = np.ones(len(xy), dtype=bool)
    first[1:] = part_of[1:] != part_of[:-1]
    repeated = np.zeros(len(xy), dtype=bool)
    repeated[1:] = (xy[1:] == xy[:-1]).all(axis=1)
    written = first | ~repeated
    line_to = np.bincount(part_of[written & ~first], minlength=len(parts))  # points after the first, per part
    written &= (line_to > 0)[part_of]
    xy, part_of = xy[written], part_of[written]
    feature_of = owner[part_of]
    delta = xy.copy()
    same = np.zeros(len(xy), dtype=bool)
    same[1:] = feature_of[1:] == feature_of[:-1]  # the cursor carries over from the previous part of the feature
    delta[1:][same[1:]] -= xy[:-1][same[1:]]
    points = np.bincount(part_of, minlength=len(parts))[line_to > 0]  # points written per written part
    sizes = 2 * points + 2  # MoveTo, dx, dy, LineTo, then two values per further point
    starts = np.cumsum(sizes) - sizes
    values = np.empty(int(sizes.sum()), dtype=np.int64)
    values[starts] = _MOVE_TO_ONE
    values[starts + 3] = ((points - 1) << 3) | _LINE_TO
    rank = _within(points)  # a point's place in its part
    at = np.repeat(starts, points) + np.where(rank == 0, 1, 2 + 2 * rank)
    zigzag = _zigzag(delta)
    values[at] = zigzag[:, 0]
    values[at + 1] = zigzag[:, 1]
    counts = np.bincount(owner[line_to > 0], weights=sizes, minlength=len(geometries)).astype(np.int64)
    return values, counts


def _tags(
    columns: Sequence[tuple[str, Sequence[object]]], keep: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[str], list[object]]:
    """Per kept feature its tags (key index, value index per present property, in property order), how many, the
    keys and the values in order of first appearance (features in order, properties in order)."""
    n, width = len(keep), len(columns)
    if n == 0 or width == 0:
        return np.empty(0, np.int64), np.zeros(n, np.int64), [], []
    if n == len(columns[0][1]):  # no feature left out: the lists as they are
        lists = [values for _, values in columns]
    else:
        rows = keep.tolist()
        lists = [[values[i] for i in rows] for _, values in columns]
    # Every property value in the order the encoder meets them (feature by feature), numbered by one dict in C.
    flat = list(itertools.chain.from_iterable(zip(*lists, strict=True)))
    kinds = set(map(type, flat))
    if kinds <= _PLAIN:
        present = np.fromiter(map(operator.is_not, flat, itertools.repeat(None)), bool, len(flat))
    else:
        present = np.fromiter(map(isinstance, flat, itertools.repeat(_HANDLED)), bool, len(flat))
    keyed = flat
    if bool in kinds and kinds & {int, float}:  # True is 1 to a dict, not to mapbox-vector-tile's tables
        keyed = [(v,) if v.__class__ is bool else v for v in flat]
    seen: dict[object, int] = {}
    first = np.fromiter(map(seen.setdefault, keyed, range(len(flat))), np.int64, len(flat))
    new = (first == np.arange(len(flat))) & present
    value_index = (np.cumsum(new) - 1)[first].reshape(n, width)
    table = list(itertools.compress(flat, new.tolist()))
    present = present.reshape(n, width)
    first_row = np.where(present.any(axis=0), present.argmax(axis=0), n)
    key_order = sorted((int(first_row[c]), c) for c in range(width) if first_row[c] < n)
    key_index = np.zeros(width, dtype=np.int64)
    keys = []
    for _, column in key_order:
        key_index[column] = len(keys)
        keys.append(columns[column][0])
    pairs = np.stack([np.broadcast_to(key_index, (n, width)), value_index], axis=2)
    return pairs[present].ravel(), 2 * present.sum(axis=1), keys, table


def _features(
    ids: np.ndarray, tags: np.ndarray, tag_counts: np.ndarray, geometry: np.ndarray, counts: np.ndarray, kind: int
) -> bytes:
    """The layer's `features` fields (2): per feature id (1), packed tags (2), type (3), packed geometry (4)."""
    n = len(ids)
    has_id = ids >= 0
    has_tags = tag_counts > 0
    tag_owner = np.repeat(np.arange(n), tag_counts)
    tag_bytes = np.bincount(tag_owner, weights=_sizes(tags), minlength=n).astype(np.int64)
    geometry_owner = np.repeat(np.arange(n), counts)
    geometry_bytes = np.bincount(geometry_owner, weights=_sizes(geometry), minlength=n).astype(np.int64)
    id_values = np.where(has_id, ids, 0)
    length = (
        has_id * (1 + _sizes(id_values))
        + has_tags * (1 + _sizes(tag_bytes) + tag_bytes)
        + 2
        + 1
        + _sizes(geometry_bytes)
        + geometry_bytes
    )
    # tokens per feature: 0x12 length [0x08 id] [0x12 tag-bytes tags...] 0x18 type 0x22 geometry-bytes geometry...
    heads = 2 + 2 * has_id + 2 * has_tags
    total = heads + tag_counts + 4 + counts
    starts = np.cumsum(total) - total
    tokens = np.empty(int(total.sum()), dtype=np.int64)
    tokens[starts] = 0x12
    tokens[starts + 1] = length
    at = starts + 2
    tokens[at[has_id]] = 0x08
    tokens[at[has_id] + 1] = id_values[has_id]
    at = at + 2 * has_id
    tokens[at[has_tags]] = 0x12
    tokens[at[has_tags] + 1] = tag_bytes[has_tags]
    at = at + 2 * has_tags
    tokens[np.repeat(at, tag_counts) + _within(tag_counts)] = tags
    at = at + tag_counts
    tokens[at] = 0x18
    tokens[at + 1] = kind
    tokens[at + 2] = 0x22
    tokens[at + 3] = geometry_bytes
    tokens[np.repeat(at + 4, counts) + _within(counts)] = geometry
    return _varints(tokens)


def _zigzag(values: np.ndarray) -> np.ndarray:
    return (values << 1) ^ (values >> 31)  # as mapbox-vector-tile: 32-bit, for deltas within a tile


def _within(counts: np.ndarray) -> np.ndarray:
    """0, 1, ... count-1 for each count, concatenated."""
    counts = np.asarray(counts, dtype=np.int64)
    return np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)


def _sizes(values: np.ndarray) -> np.ndarray:
    """Bytes of each value as a varint (a negative int64 as its 64-bit two's complement: ten)."""
    unsigned = np.asarray(values, dtype=np.int64).view(np.uint64)
    sizes = np.ones(len(unsigned), dtype=np.int64)
    for shift in range(7, 64, 7):
        sizes += unsigned >= np.uint64(1 << shift)
    return sizes


def _varints(values: np.ndarray) -> bytes:
    unsigned = values.view(np.uint64)
    sizes = _sizes(values)
    repeated = np.repeat(unsigned, sizes)
    place = _within(sizes)
    data = (repeated >> (7 * place).astype(np.uint64)) & np.uint64(0x7F)
    data |= (place < np.repeat(sizes - 1, sizes)).astype(np.uint64) << np.uint64(7)
    return data.astype(np.uint8).tobytes()


def _varint(value: int) -> bytes:
    """One varint, in Python: the values table and keys are encoded one by one (a numpy call costs more)."""
    if 0 <= value < 0x80:
        return _SMALL[value]
    value &= 0xFFFF_FFFF_FFFF_FFFF  # a negative int64 as its two's complement
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL = [bytes((value,)) for value in range(0x80)]


def _field_bytes(number: int, data: bytes) -> bytes:
    return _varint((number << 3) | 2) + _varint(len(data)) + data


def _values_table(table: list[object]) -> bytes:
    """The layer's `values` fields (4). Mostly strings, thousands per tile: those are encoded by C-level maps, their
    two headers (up to 125 bytes) taken from a table; the other values one by one."""
    strings = np.fromiter(map(isinstance, table, itertools.repeat(str)), bool, len(table))
    data = list(map(str.encode, itertools.compress(table, strings.tolist())))
    sizes = list(map(len, data))
    if sizes and max(sizes) >= len(_SHORT_STRING):
        return b"".join(_field_bytes(4, _value(value)) for value in table)
    pieces = np.empty((len(table), 2), dtype=object)  # per value: its headers (or all of it), its string's bytes
    pieces[strings, 0] = np.fromiter(map(_SHORT_STRING.__getitem__, sizes), object, len(sizes))
    pieces[strings, 1] = np.fromiter(data, object, len(data))
    others = [_field_bytes(4, _value(value)) for value in itertools.compress(table, (~strings).tolist())]
    pieces[~strings, 0] = np.fromiter(others, object, len(others))
    pieces[~strings, 1] = b""
    return b"".join(pieces.ravel().tolist())


_SHORT_STRING = [bytes((0x22, size + 2, 0x0A, size)) for size in range(126)]  # Value{string_value} up to 125 bytes


def _value(value: object) -> bytes:
    """A `Value` message: bool (7), string (1), int64 (4) or double (3), as mapbox-vector-tile picks them."""
    if isinstance(value, bool):
        return b"\x38\x01" if value else b"\x38\x00"
    if isinstance(value, str):
        return _field_bytes(1, value.encode())
    if isinstance(value, int):
        return b"\x20" + _varint(value)
    return b"\x19" + struct.pack("<d", value)
