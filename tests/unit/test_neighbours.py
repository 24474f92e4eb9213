"""The neighbour graph and street runs against slow, obviously correct twins."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from pyproj import Geod

from domain.neighbours import (
    NeighbourGraph,
    build_neighbour_graph,
    build_neighbour_graph_xy,
    local_xy_m,
    neighbours_within,
    order_along_axis,
    street_runs,
)

DATA_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
BRISTOL_CSV = DATA_DIR / "bristol_streetlights_lonlat.csv"
GEOD = Geod(ellps="WGS84")

FloatArray = npt.NDArray[np.float64]


@pytest.fixture(scope="module")
def bristol_lon_lat() -> tuple[FloatArray, FloatArray]:
    if not BRISTOL_CSV.is_file():
        pytest.skip(f"shared data set missing: {BRISTOL_CSV} (see ../shared/data/README.md)")
    table = np.loadtxt(BRISTOL_CSV, delimiter=",", skiprows=1)
    return table[:, 0], table[:, 1]


@pytest.fixture(scope="module")
def clifton(bristol_lon_lat: tuple[FloatArray, FloatArray]) -> tuple[FloatArray, FloatArray]:
    """~500 lamps in a 550 m x 560 m patch of central Bristol (dense, with duplicate positions)."""
    lon, lat = bristol_lon_lat
    patch = (np.abs(lon + 2.59) < 0.004) & (np.abs(lat - 51.455) < 0.0025)
    return lon[patch], lat[patch]


def slow_neighbours(
    lon: FloatArray, lat: FloatArray, max_distance_m: float, k: int
) -> list[list[tuple[float, int]]]:
    """Each lamp's neighbours as (geodesic distance, index), nearest (then lowest index) first."""
    n = len(lon)
    result = []
    for i in range(n):
        _, _, dist = GEOD.inv(np.full(n, lon[i]), np.full(n, lat[i]), lon, lat)
        near = sorted((float(dist[j]), j) for j in range(n) if j != i and dist[j] <= max_distance_m)
        result.append(near[:k])
    return result


def assert_matches_twin(
    graph: NeighbourGraph, twin: list[list[tuple[float, int]]], max_distance_m: float, k: int
) -> None:
    """Same neighbours in the same order, distances within 0.5 m.

    The graph measures on a projection and the twin on the ellipsoid, so a candidate within a
    hair (~1e-5 m) of a cut-off could in principle fall differently; the patches used here have
    none, so agreement must be exact.
    """
    assert graph.n_lamps == len(twin)
    for i, expected in enumerate(twin):
        start, stop = graph.indptr[i], graph.indptr[i + 1]
        got = list(
            zip(
                graph.distance_m[start:stop].tolist(),
                graph.indices[start:stop].tolist(),
                strict=True,
            )
        )
        assert [j for _, j in got] == [j for _, j in expected], f"lamp {i}"
        for (got_m, _), (want_m, _) in zip(got, expected, strict=True):
            assert abs(got_m - want_m) < 0.5
        assert len(got) <= k
        assert all(d <= max_distance_m for d, _ in got)


def test_graph_matches_brute_force_geodesic_twin(clifton: tuple[FloatArray, FloatArray]) -> None:
    lon, lat = clifton
    assert 300 <= len(lon) <= 800
    graph = build_neighbour_graph(lon, lat)
    assert_matches_twin(graph, slow_neighbours(lon, lat, 60.0, 6), 60.0, 6)
    assert graph.n_edges > 2 * len(lon)  # a dense patch: the comparison is not vacuous


@pytest.mark.parametrize(("max_distance_m", "k"), [(25.0, 3), (120.0, 10), (60.0, 0)])
def test_graph_matches_twin_for_other_limits(
    clifton: tuple[FloatArray, FloatArray], max_distance_m: float, k: int
) -> None:
    lon, lat = clifton
    lon, lat = lon[:250], lat[:250]
    graph = build_neighbour_graph(lon, lat, max_distance_m=max_distance_m, k=k)
    assert_matches_twin(graph, slow_neighbours(lon, lat, max_distance_m, k), max_distance_m, k)


def test_graph_arrays_have_the_documented_types(clifton: tuple[FloatArray, FloatArray]) -> None:
    graph = build_neighbour_graph(*clifton)
    assert graph.indptr.dtype == np.int64 and len(graph.indptr) == len(clifton[0]) + 1
    assert graph.indices.dtype == np.int32
    assert graph.distance_m.dtype == np.float32
    assert graph.side.dtype == np.int8
    assert set(np.unique(graph.side).tolist()) <= {-1, 1}
    assert np.all(np.diff(graph.indptr) >= 0)


def slow_sides(lon: FloatArray, lat: FloatArray, graph: NeighbourGraph) -> list[list[int | None]]:
    """Side of each edge from a per-lamp eigen-decomposition in the lamp's own tangent plane.

    None marks edges whose side is genuinely ambiguous: the neighbour is almost square to the
    axis, or the neighbourhood has no clear direction, or the axis is almost exactly north-south
    (where "east-pointing" flips on a rounding error).
    """
    sides: list[list[int | None]] = []
    for i in range(graph.n_lamps):
        targets = graph.neighbours_of(i)
        azimuth_deg, _, dist_m = GEOD.inv(
            np.full(len(targets), lon[i]), np.full(len(targets), lat[i]), lon[targets], lat[targets]
        )
        offsets = np.column_stack(
            (dist_m * np.sin(np.radians(azimuth_deg)), dist_m * np.cos(np.radians(azimuth_deg)))
        )
        points = np.vstack((np.zeros((1, 2)), offsets))
        values, vectors = np.linalg.eigh(np.cov(points.T, bias=True))
        axis = vectors[:, 1]
        if axis[0] < 0:
            axis = -axis
        clear = len(targets) > 0 and values[1] - values[0] > 1e-3 * max(values[1], 1e-9)
        row: list[int | None] = []
        for offset, d in zip(offsets, dist_m, strict=True):
            along = float(offset @ axis)
            if not clear or abs(axis[0]) < 1e-2 or abs(along) < 1e-2 * max(d, 1e-9):
                row.append(None)
            else:
                row.append(1 if along > 0 else -1)
        sides.append(row)
    return sides


def test_sides_match_twin(clifton: tuple[FloatArray, FloatArray]) -> None:
    lon, lat = clifton
    graph = build_neighbour_graph(lon, lat)
    twin = slow_sides(lon, lat, graph)
    compared = 0
    for i, expected in enumerate(twin):
        got = graph.side[graph.indptr[i] : graph.indptr[i + 1]].tolist()
        for got_side, want in zip(got, expected, strict=True):
            if want is not None:
                assert got_side == want, f"lamp {i}"
                compared += 1
    assert compared > 0.9 * graph.n_edges


def straight_street(
    n: int, spacing_m: float, bearing_deg: float = 90.0
) -> tuple[FloatArray, FloatArray]:
    """Lamps along a geodesic from a point in Bristol, ``spacing_m`` apart."""
    lon, lat, _ = GEOD.fwd(
        np.full(n, -2.6), np.full(n, 51.45), np.full(n, bearing_deg), np.arange(n) * spacing_m
    )
    return np.asarray(lon), np.asarray(lat)


def test_sides_on_an_east_west_street_point_east() -> None:
    lon, lat = straight_street(5, 30.0)
    graph = build_neighbour_graph(lon, lat, max_distance_m=65.0)
    middle = 2
    start, stop = graph.indptr[middle], graph.indptr[middle + 1]
    sides = dict(
        zip(graph.indices[start:stop].tolist(), graph.side[start:stop].tolist(), strict=True)
    )
    assert sides == {1: -1, 3: 1, 0: -1, 4: 1}


def test_street_order_decides_ahead_on_the_same_street() -> None:
    lon, lat = straight_street(5, 30.0)
    street = np.zeros(5, dtype=np.int32)
    # Order runs westwards here, so "ahead" is west even though the geometric default is east.
    order = np.arange(5, dtype=np.int32)[::-1].copy()
    graph = build_neighbour_graph(lon, lat, street_index=street, order_on_street=order)
    sources = graph.edge_sources()
    expected = np.sign(order[graph.indices].astype(int) - order[sources])
    np.testing.assert_array_equal(graph.side, expected)


def test_crossing_street_neighbours_follow_the_lamps_street_direction() -> None:
    lon, lat = straight_street(5, 30.0)
    # One lamp 20 m east-north-east of the middle lamp, on another street.
    extra_lon, extra_lat, _ = GEOD.fwd(lon[2], lat[2], 60.0, 20.0)
    all_lon = np.append(lon, extra_lon)
    all_lat = np.append(lat, extra_lat)
    street = np.array([0, 0, 0, 0, 0, 1], dtype=np.int32)
    westwards = np.array([4, 3, 2, 1, 0, 0], dtype=np.int32)
    graph = build_neighbour_graph(all_lon, all_lat, street_index=street, order_on_street=westwards)
    start, stop = graph.indptr[2], graph.indptr[3]
    sides = dict(
        zip(graph.indices[start:stop].tolist(), graph.side[start:stop].tolist(), strict=True)
    )
    # Lamp 2's street runs west, so an eastern neighbour on another street is behind it.
    assert sides[5] == -1
    assert sides[1] == 1 and sides[3] == -1


def slow_within(
    graph: NeighbourGraph, ahead: int, behind: int, max_distance_m: float
) -> list[list[int]]:
    kept = []
    for i in range(graph.n_lamps):
        row, counts = [], {1: 0, -1: 0}
        limits = {1: ahead, -1: behind}
        for e in range(graph.indptr[i], graph.indptr[i + 1]):
            side = int(graph.side[e])
            if graph.distance_m[e] <= max_distance_m and counts[side] < limits[side]:
                counts[side] += 1
                row.append(int(graph.indices[e]))
        kept.append(row)
    return kept


@pytest.mark.parametrize(
    ("ahead", "behind", "max_distance_m"),
    [(1, 1, 60.0), (2, 0, 40.0), (0, 3, 60.0), (6, 6, 25.0), (0, 0, 60.0)],
)
def test_neighbours_within_matches_twin(
    clifton: tuple[FloatArray, FloatArray], ahead: int, behind: int, max_distance_m: float
) -> None:
    graph = build_neighbour_graph(*clifton)
    filtered = neighbours_within(graph, ahead, behind, max_distance_m)
    twin = slow_within(graph, ahead, behind, max_distance_m)
    assert [filtered.neighbours_of(i).tolist() for i in range(filtered.n_lamps)] == twin
    sources = filtered.edge_sources()
    original = {
        (int(s), int(t)): (d, side)
        for s, t, d, side in zip(
            graph.edge_sources(), graph.indices, graph.distance_m, graph.side, strict=True
        )
    }
    for s, t, d, side in zip(
        sources, filtered.indices, filtered.distance_m, filtered.side, strict=True
    ):
        assert original[(int(s), int(t))] == (d, side)


def test_neighbours_within_refuses_negative_counts(clifton: tuple[FloatArray, FloatArray]) -> None:
    graph = build_neighbour_graph(*clifton)
    with pytest.raises(ValueError, match="ahead and behind must be >= 0"):
        neighbours_within(graph, -1, 1, 60.0)
    with pytest.raises(ValueError, match="max_distance_m must be a finite distance"):
        neighbours_within(graph, 1, 1, float("nan"))


def test_local_plane_distances_match_geodesics_across_a_city(
    bristol_lon_lat: tuple[FloatArray, FloatArray],
) -> None:
    lon, lat = bristol_lon_lat
    x_m, y_m = local_xy_m(lon, lat)
    rng = np.random.default_rng(7)
    a = rng.integers(0, len(lon), 2000)
    b = rng.integers(0, len(lon), 2000)
    _, _, geodesic_m = GEOD.inv(lon[a], lat[a], lon[b], lat[b])
    planar_m = np.hypot(x_m[a] - x_m[b], y_m[a] - y_m[b])
    # Pairs up to ~30 km apart: the projection's scale error stays below 2e-5 of the distance.
    assert np.all(np.abs(planar_m - geodesic_m) <= 2e-5 * geodesic_m + 1e-6)


def test_local_plane_is_east_north_metres() -> None:
    x_m, y_m = local_xy_m(
        np.array([-2.6, -2.6]), np.array([51.45, 51.46]), origin_lon_deg=-2.6, origin_lat_deg=51.45
    )
    assert x_m[0] == pytest.approx(0.0, abs=1e-6) and y_m[0] == pytest.approx(0.0, abs=1e-6)
    assert abs(x_m[1]) < 1e-6
    assert y_m[1] == pytest.approx(GEOD.inv(-2.6, 51.45, -2.6, 51.46)[2], abs=1e-3)


def test_inputs_are_validated() -> None:
    with pytest.raises(ValueError, match="must be finite"):
        local_xy_m(np.array([np.nan]), np.array([51.0]))
    with pytest.raises(ValueError, match="one length"):
        local_xy_m(np.array([1.0, 2.0]), np.array([51.0]))
    with pytest.raises(ValueError, match="street_index and order_on_street together"):
        build_neighbour_graph_xy(np.zeros(2), np.zeros(2), street_index=np.zeros(2))
    with pytest.raises(ValueError, match="k \\(most neighbours per lamp\\) must be >= 0"):
        build_neighbour_graph_xy(np.zeros(2), np.zeros(2), k=-1)


def test_empty_and_single_lamp_inventories() -> None:
    empty = build_neighbour_graph(np.empty(0), np.empty(0))
    assert empty.n_lamps == 0 and empty.n_edges == 0
    single = build_neighbour_graph(np.array([-2.6]), np.array([51.45]))
    assert single.n_lamps == 1 and single.n_edges == 0
    runs, order = street_runs(np.array([0.0]), np.array([0.0]))
    assert runs.tolist() == [0] and order.tolist() == [0]


# --- street runs -------------------------------------------------------------------------


def test_two_parallel_streets_become_two_ordered_runs() -> None:
    x_m = np.concatenate((np.arange(10) * 30.0, np.arange(10) * 30.0 + 5.0))
    y_m = np.concatenate((np.zeros(10), np.full(10, 100.0)))
    shuffle = np.random.default_rng(3).permutation(20)
    runs, order = street_runs(x_m[shuffle], y_m[shuffle])
    assert len(np.unique(runs)) == 2
    for run in np.unique(runs):
        members = runs == run
        assert len(np.unique(y_m[shuffle][members])) == 1  # one street per run
        by_order = np.argsort(order[members])
        assert sorted(order[members].tolist()) == list(range(10))
        assert np.all(np.diff(x_m[shuffle][members][by_order]) > 0)  # west to east


def test_runs_stop_at_a_right_angle_corner() -> None:
    x_m = np.concatenate((np.arange(10) * 30.0, np.full(9, 270.0)))
    y_m = np.concatenate((np.zeros(10), (np.arange(9) + 1) * 30.0))
    runs, _ = street_runs(x_m, y_m)
    assert len(np.unique(runs)) == 2
    for run in np.unique(runs):
        members = runs == run
        # Each run is straight: all its lamps share an x or a y.
        assert len(np.unique(x_m[members])) == 1 or len(np.unique(y_m[members])) == 1


def test_staggered_lamps_on_both_sides_of_a_road_form_one_run() -> None:
    x_m = np.arange(20) * 15.0
    y_m = np.where(np.arange(20) % 2 == 0, 0.0, 8.0)
    runs, order = street_runs(x_m, y_m)
    assert runs.tolist() == [0] * 20
    assert order.tolist() == list(range(20))


def test_a_lamp_out_of_reach_is_a_run_of_its_own() -> None:
    runs, order = street_runs(np.array([0.0, 30.0, 500.0]), np.array([0.0, 0.0, 0.0]))
    assert runs.tolist() == [0, 0, 1]
    assert order.tolist() == [0, 1, 0]


def test_bristol_runs_cover_every_lamp_with_a_contiguous_order(
    bristol_lon_lat: tuple[FloatArray, FloatArray],
) -> None:
    x_m, y_m = local_xy_m(*bristol_lon_lat)
    runs, order = street_runs(x_m, y_m)
    assert runs.min() == 0 and np.unique(runs).size == runs.max() + 1
    # Within each run the orders are exactly 0..size-1.
    sizes = np.bincount(runs)
    key = np.lexsort((order, runs))
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    expected = np.arange(len(runs)) - np.repeat(starts, sizes)
    np.testing.assert_array_equal(order[key], expected)
    # Consecutive lamps of a run are within the link distance.
    same_run = runs[key][1:] == runs[key][:-1]
    gaps_m = np.hypot(np.diff(x_m[key]), np.diff(y_m[key]))[same_run]
    assert gaps_m.max() <= 60.0


def test_order_along_axis_orders_each_street_west_first() -> None:
    x_m = np.array([50.0, 0.0, 25.0, 10.0, 0.0, 5.0])
    y_m = np.array([50.0, 0.0, 25.0, 100.0, 80.0, 90.0])
    group = np.array([0, 0, 0, 1, 1, 1])
    assert order_along_axis(x_m, y_m, group).tolist() == [2, 0, 1, 2, 0, 1]
