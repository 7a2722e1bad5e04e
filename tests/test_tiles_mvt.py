"""server/tiles/mvt.py writes the bytes mapbox-vector-tile writes for point and line layers."""

from __future__ import annotations

import mapbox_vector_tile
import numpy as np
import pytest
import shapely
from mapbox_vector_tile.encoder import on_invalid_geometry_make_valid

from server.tiles.mvt import encode_layer

OPTIONS = {"extents": 4096, "y_coord_down": True, "on_invalid_geometry": on_invalid_geometry_make_valid}


def reference(name: str, ids, geometries, columns) -> bytes:
    """What render.py encoded with before: feature dicts through mapbox-vector-tile."""
    features = []
    for i, geometry in enumerate(geometries):
        properties = {key: values[i] for key, values in columns if values[i] is not None}
        features.append({"geometry": geometry, "properties": properties, "id": int(ids[i])})
    return mapbox_vector_tile.encode(
        [{"name": name, "features": features}],
        per_layer_options={name: {"check_winding_order": False}},
        default_options=OPTIONS,
    )


def random_values(rng: np.random.Generator, n: int) -> list:
    """Values of every kind a GeoPackage column gives (and what render.py makes of booleans), repeated often."""
    pool = [
        "heat",
        "water",
        "",
        "Ёлка 1",
        "nul\x00",
        "ы" * 70,
        0,
        1,
        -1,
        2**40,
        -(2**40),
        1.0,
        0.5,
        -2.25,
        True,
        False,
        b"blob",
        7,
    ]
    return [None if rng.random() < 0.3 else pool[rng.integers(len(pool))] for _ in range(n)]


def random_lines(rng: np.random.Generator, n: int) -> list:
    """Lines and multilines in tile units with repeated points, parts that round to one point, tiny features."""
    lines = []
    for _ in range(n):
        parts = []
        for _ in range(rng.integers(1, 4)):
            count = rng.integers(2, 7)
            if rng.random() < 0.2:  # all within half a unit: rounds to a single point
                base = rng.uniform(-64, 4160, 2)
                points = base + rng.uniform(-0.2, 0.2, (count, 2))
            else:
                points = rng.uniform(-64, 4160, (count, 2))
                points[rng.random(count) < 0.3] = np.round(points[0])  # repeats, also exactly .5 below
            if rng.random() < 0.2:
                points[0] = [10.5, 11.5]
                points[1] = [11.5, 12.5]
            parts.append(points)
        geometry = shapely.LineString(parts[0]) if len(parts) == 1 else shapely.MultiLineString(parts)
        lines.append(geometry)
    return lines


@pytest.mark.parametrize("seed", range(12))
def test_lines_are_encoded_as_mapbox_vector_tile_does(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    geometries = np.array(random_lines(rng, n), dtype=object)
    ids = rng.integers(-3, 10**12, n)  # a negative id is left out
    columns = [(f"f{k}", random_values(rng, n)) for k in range(int(rng.integers(0, 5)))]
    assert encode_layer("lines", ids, geometries, columns, 4096) == reference("lines", ids, geometries, columns)


@pytest.mark.parametrize("seed", range(12))
def test_points_are_encoded_as_mapbox_vector_tile_does(seed):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(1, 200))
    xy = rng.uniform(-64, 4160, (n, 2))
    xy[::5] = np.floor(xy[::5]) + 0.5  # exact halves: rounded to even, as Python's round()
    geometries = shapely.points(xy)
    ids = rng.integers(0, 2**40, n)
    columns = [(f"f{k}", random_values(rng, n)) for k in range(int(rng.integers(0, 6)))]
    columns.append(("point_count", [int(c) for c in rng.integers(1, 300, n)]))
    assert encode_layer("points", ids, geometries, columns, 4096) == reference("points", ids, geometries, columns)


def test_a_layer_whose_lines_all_round_to_a_point_is_there_without_features():
    geometries = np.array([shapely.LineString([(1.1, 1.1), (1.2, 1.3)])], dtype=object)
    columns = [("name", ["a"])]
    expected = reference("lines", [5], geometries, columns)
    assert encode_layer("lines", np.array([5]), geometries, columns, 4096) == expected
    assert mapbox_vector_tile.decode(expected)["lines"]["features"] == []


def test_layers_concatenate_into_one_tile():
    points = shapely.points([[1, 2], [3, 4]])
    lines = np.array([shapely.LineString([(0, 0), (10, 10)])], dtype=object)
    both = mapbox_vector_tile.encode(
        [
            {"name": "a", "features": [{"geometry": g, "properties": {"k": 1}, "id": i} for i, g in enumerate(points)]},
            {"name": "b", "features": [{"geometry": lines[0], "properties": {"k": True}, "id": 9}]},
        ],
        per_layer_options={"a": {"check_winding_order": False}, "b": {"check_winding_order": False}},
        default_options=OPTIONS,
    )
    a = encode_layer("a", np.array([0, 1]), points, [("k", [1, 1])], 4096)
    b = encode_layer("b", np.array([9]), lines, [("k", [True])], 4096)
    assert a + b == both


def test_polygons_and_mixed_layers_are_left_to_mapbox_vector_tile():
    square = shapely.box(0, 0, 10, 10)
    assert encode_layer("p", np.array([1]), np.array([square], dtype=object), [], 4096) is None
    mixed = np.array([shapely.Point(1, 1), shapely.LineString([(0, 0), (5, 5)])], dtype=object)
    assert encode_layer("m", np.array([1, 2]), mixed, [], 4096) is None


def test_points_given_as_coordinates_are_the_points_given_as_geometries():
    xy = np.array([[0.5, 1.5], [2.5, -3.5], [4095.49, 4096.51]])
    columns = [("k", ["a", None, "a"])]
    expected = encode_layer("p", np.array([1, 2, 3]), shapely.points(xy), columns, 4096)
    assert encode_layer("p", np.array([1, 2, 3]), xy, columns, 4096) == expected
