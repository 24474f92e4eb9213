"""Which lamps are near which: the neighbour graph for presence light-on-demand, and street runs.

Theory of operation
-------------------
Positions are projected once to a local metric plane, an azimuthal equidistant projection
(pyproj ``aeqd``, WGS84 ellipsoid) centred on the inventory's mean position. Distances from the
centre are exact and the scale error elsewhere grows as (r/R)^2/6, about 2e-6 at 20 km, so a
60 m neighbour distance is right to well under a millimetre across a whole town.

A k-d tree (``scipy.spatial.cKDTree``) then finds, for every lamp, its nearest ``k`` other lamps
within ``max_distance_m``. The graph is directed (lamp ``a`` may be among ``b``'s six nearest
without the converse) and stored as CSR arrays ordered by distance, the shape the dimming
kernels iterate over.

Each edge carries a *side*: +1 if the neighbour is ahead of the lamp along the street, -1 if
behind. "Along the street" is the principal direction of the lamp's neighbourhood (the major
axis of the 2x2 covariance of the lamp and its neighbours), pointing east (north when exactly
north-south) unless street order is known, in which case it points towards increasing
``order_on_street`` and same-street neighbours take their side from the order itself.

Street runs (for inventories without street names): lamps are chained greedily, shortest link
first, into paths. A link is added only when both lamps have fewer than two links, it would not
close a loop, and it turns by at most ``max_turn_deg`` at either lamp, so runs stop at corners
and junctions instead of merging whole neighbourhoods. Each path is one run, ordered from its
western end.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from pyproj import Transformer
from scipy.spatial import cKDTree

FloatArray = npt.NDArray[np.float64]
IndexArray = npt.NDArray[np.int32]

DEFAULT_MAX_DISTANCE_M = 60.0
DEFAULT_MAX_NEIGHBOURS = 6
DEFAULT_RUN_LINK_M = 60.0
DEFAULT_RUN_MAX_TURN_DEG = 60.0


@dataclass(frozen=True, slots=True, eq=False)
class NeighbourGraph:
    """Directed neighbour graph in CSR form.

    The neighbours of lamp ``i`` are ``indices[indptr[i]:indptr[i + 1]]``, nearest first, at
    ``distance_m`` metres, on ``side`` +1 (ahead along the street) or -1 (behind).
    """

    indptr: npt.NDArray[np.int64]
    indices: npt.NDArray[np.int32]
    distance_m: npt.NDArray[np.float32]
    side: npt.NDArray[np.int8]

    def __post_init__(self) -> None:
        for name, dtype in (
            ("indptr", np.int64),
            ("indices", np.int32),
            ("distance_m", np.float32),
            ("side", np.int8),
        ):
            array = getattr(self, name)
            if array.dtype != dtype or array.ndim != 1:
                raise ValueError(
                    f"NeighbourGraph.{name} must be a 1-D {np.dtype(dtype).name} array, "
                    f"got {array.ndim}-D {array.dtype}"
                )
        if len(self.indptr) == 0 or self.indptr[0] != 0:
            raise ValueError("NeighbourGraph.indptr must start with 0 (it has n_lamps + 1 entries)")
        nnz = int(self.indptr[-1])
        for name in ("indices", "distance_m", "side"):
            if len(getattr(self, name)) != nnz:
                raise ValueError(
                    f"NeighbourGraph.{name} has {len(getattr(self, name))} entries, "
                    f"but indptr[-1] says {nnz}"
                )

    @property
    def n_lamps(self) -> int:
        return len(self.indptr) - 1

    @property
    def n_edges(self) -> int:
        return int(self.indptr[-1])

    def neighbours_of(self, lamp: int) -> IndexArray:
        """Indices of lamp ``lamp``'s neighbours, nearest first."""
        return self.indices[self.indptr[lamp] : self.indptr[lamp + 1]]

    def edge_sources(self) -> IndexArray:
        """The lamp each edge starts from (the CSR row expanded to one entry per edge)."""
        return np.repeat(np.arange(self.n_lamps, dtype=np.int32), np.diff(self.indptr))


@functools.lru_cache(maxsize=32)
def _aeqd_transformer(origin_lon_deg: float, origin_lat_deg: float) -> Transformer:
    return Transformer.from_crs(
        "EPSG:4326",
        f"+proj=aeqd +lat_0={origin_lat_deg!r} +lon_0={origin_lon_deg!r} +datum=WGS84 +units=m",
        always_xy=True,
    )


def local_xy_m(
    lon_deg: npt.ArrayLike,
    lat_deg: npt.ArrayLike,
    *,
    origin_lon_deg: float | None = None,
    origin_lat_deg: float | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Project WGS84 positions to a local plane in metres (x east, y north).

    Azimuthal equidistant on the WGS84 ellipsoid, centred on the given origin or, by default,
    on the mean position of the inputs (so calls on the same lamps give the same plane).
    """
    lon = np.asarray(lon_deg, dtype=np.float64)
    lat = np.asarray(lat_deg, dtype=np.float64)
    if lon.shape != lat.shape or lon.ndim != 1:
        raise ValueError(
            f"lon_deg and lat_deg must be 1-D arrays of one length, got {lon.shape} and {lat.shape}"
        )
    if len(lon) == 0:
        return np.empty(0), np.empty(0)
    if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
        raise ValueError("lon_deg and lat_deg must be finite; drop lamps without a position first")
    origin_lon = float(lon.mean()) if origin_lon_deg is None else float(origin_lon_deg)
    origin_lat = float(lat.mean()) if origin_lat_deg is None else float(origin_lat_deg)
    # Rounding the origin to ~1 mm keeps the transformer cache useful without moving the plane.
    transformer = _aeqd_transformer(round(origin_lon, 8), round(origin_lat, 8))
    x_m, y_m = transformer.transform(lon, lat)
    return np.asarray(x_m, dtype=np.float64), np.asarray(y_m, dtype=np.float64)


def _check_xy(x_m: npt.ArrayLike, y_m: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    x = np.asarray(x_m, dtype=np.float64)
    y = np.asarray(y_m, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(
            f"x_m and y_m must be 1-D arrays of one length, got {x.shape} and {y.shape}"
        )
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("x_m and y_m must be finite; drop lamps without a position first")
    return x, y


def _nearest(
    x_m: FloatArray, y_m: FloatArray, max_distance_m: float, k: int
) -> tuple[npt.NDArray[np.int64], IndexArray, FloatArray]:
    """CSR (indptr, indices, distances) of each point's ``k`` nearest others within range."""
    n = len(x_m)
    if n == 0 or k == 0:
        return np.zeros(n + 1, dtype=np.int64), np.empty(0, np.int32), np.empty(0)
    xy = np.column_stack((x_m, y_m))
    tree = cKDTree(xy)
    # One extra because each point finds itself; the bound is exclusive, so nudge it up.
    query_k = min(k + 1, n)
    bound = float(np.nextafter(max_distance_m, np.inf))
    dist, idx = tree.query(xy, k=query_k, distance_upper_bound=bound, workers=-1)
    dist = np.asarray(dist, dtype=np.float64).reshape(n, query_k)
    idx = np.asarray(idx, dtype=np.int64).reshape(n, query_k)
    # Self is normally first, but not when another lamp stands on the same spot, so mask by
    # index rather than dropping column 0. Missing neighbours come back as index n.
    valid = (idx != np.arange(n)[:, None]) & (idx < n)
    # Equal distances in a fixed order (by index) so results do not depend on tree layout.
    sort_key_dist = np.where(valid, dist, np.inf)
    sort_key_idx = np.where(valid, idx, n)
    order = np.lexsort((sort_key_idx, sort_key_dist), axis=-1)
    valid = np.take_along_axis(valid, order, axis=-1)[:, :k]
    dist = np.take_along_axis(dist, order, axis=-1)[:, :k]
    idx = np.take_along_axis(idx, order, axis=-1)[:, :k]
    counts = valid.sum(axis=1)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return indptr, idx[valid].astype(np.int32), dist[valid]


def _principal_direction(
    x_m: FloatArray, y_m: FloatArray, sources: IndexArray, targets: IndexArray
) -> tuple[FloatArray, FloatArray]:
    """Unit major axis (ux, uy) of each lamp plus its neighbours, pointing east (or north)."""
    n = len(x_m)
    dx = x_m[targets] - x_m[sources]
    dy = y_m[targets] - y_m[sources]
    # The lamp itself contributes a zero offset, hence the +1 in the point count.
    m = np.bincount(sources, minlength=n).astype(np.float64) + 1.0
    mean_x = np.bincount(sources, weights=dx, minlength=n) / m
    mean_y = np.bincount(sources, weights=dy, minlength=n) / m
    sxx = np.bincount(sources, weights=dx * dx, minlength=n) / m - mean_x * mean_x
    syy = np.bincount(sources, weights=dy * dy, minlength=n) / m - mean_y * mean_y
    sxy = np.bincount(sources, weights=dx * dy, minlength=n) / m - mean_x * mean_y
    # Major-axis angle of a 2x2 symmetric matrix; in (-pi/2, pi/2], so cos >= 0 (east-pointing).
    theta = 0.5 * np.arctan2(2.0 * sxy, sxx - syy)
    return np.cos(theta), np.sin(theta)


def _sides(
    x_m: FloatArray,
    y_m: FloatArray,
    indptr: npt.NDArray[np.int64],
    indices: IndexArray,
    street_index: IndexArray | None,
    order_on_street: IndexArray | None,
) -> npt.NDArray[np.int8]:
    n = len(x_m)
    sources = np.repeat(np.arange(n, dtype=np.int32), np.diff(indptr))
    ux, uy = _principal_direction(x_m, y_m, sources, indices)
    along = (x_m[indices] - x_m[sources]) * ux[sources] + (y_m[indices] - y_m[sources]) * uy[
        sources
    ]
    if street_index is None or order_on_street is None:
        return np.where(along >= 0.0, 1, -1).astype(np.int8)

    same_street = street_index[indices] == street_index[sources]
    order_step = np.sign(order_on_street[indices].astype(np.int64) - order_on_street[sources])
    # Point each lamp's axis towards increasing street order, so neighbours on crossing streets
    # are judged in the same sense as those on the lamp's own street.
    agreement = np.bincount(
        sources, weights=np.where(same_street, order_step * np.sign(along), 0.0), minlength=n
    )
    flip = np.where(agreement < 0.0, -1.0, 1.0)
    along = along * flip[sources]
    geometric = np.where(along >= 0.0, 1, -1)
    by_order = same_street & (order_step != 0)
    return np.where(by_order, order_step, geometric).astype(np.int8)


def build_neighbour_graph_xy(
    x_m: npt.ArrayLike,
    y_m: npt.ArrayLike,
    *,
    max_distance_m: float = DEFAULT_MAX_DISTANCE_M,
    k: int = DEFAULT_MAX_NEIGHBOURS,
    street_index: npt.ArrayLike | None = None,
    order_on_street: npt.ArrayLike | None = None,
) -> NeighbourGraph:
    """:func:`build_neighbour_graph` for positions already in a local metric plane (metres)."""
    x, y = _check_xy(x_m, y_m)
    if not (math.isfinite(max_distance_m) and max_distance_m >= 0.0):
        raise ValueError(f"max_distance_m must be a finite distance >= 0, got {max_distance_m!r}")
    if k < 0:
        raise ValueError(f"k (most neighbours per lamp) must be >= 0, got {k!r}")
    if (street_index is None) != (order_on_street is None):
        raise ValueError("give street_index and order_on_street together, or neither")
    streets: IndexArray | None = None
    orders: IndexArray | None = None
    if street_index is not None and order_on_street is not None:
        streets = np.asarray(street_index, dtype=np.int32)
        orders = np.asarray(order_on_street, dtype=np.int32)
        if streets.shape != x.shape or orders.shape != x.shape:
            raise ValueError(
                f"street_index and order_on_street must have one entry per lamp ({len(x)}), "
                f"got {streets.shape} and {orders.shape}"
            )
    indptr, indices, distance_m = _nearest(x, y, max_distance_m, k)
    side = _sides(x, y, indptr, indices, streets, orders)
    return NeighbourGraph(indptr, indices, distance_m.astype(np.float32), side)


def build_neighbour_graph(
    lon_deg: npt.ArrayLike,
    lat_deg: npt.ArrayLike,
    *,
    max_distance_m: float = DEFAULT_MAX_DISTANCE_M,
    k: int = DEFAULT_MAX_NEIGHBOURS,
    street_index: npt.ArrayLike | None = None,
    order_on_street: npt.ArrayLike | None = None,
) -> NeighbourGraph:
    """Each lamp's ``k`` nearest other lamps within ``max_distance_m`` metres, nearest first.

    Positions are WGS84 degrees. Pass ``street_index`` and ``order_on_street`` (as in
    :class:`domain.inventory.InventoryArrays`) to take ahead/behind from street order.
    """
    x_m, y_m = local_xy_m(lon_deg, lat_deg)
    return build_neighbour_graph_xy(
        x_m,
        y_m,
        max_distance_m=max_distance_m,
        k=k,
        street_index=street_index,
        order_on_street=order_on_street,
    )


def neighbours_within(
    graph: NeighbourGraph, ahead: int, behind: int, max_distance_m: float
) -> NeighbourGraph:
    """Keep, for each lamp, its nearest ``ahead`` neighbours ahead and ``behind`` behind.

    Only neighbours within ``max_distance_m`` metres count. The result keeps the input's
    nearest-first order and is a sub-graph of it (the input's ``k`` still caps the total).
    """
    if ahead < 0 or behind < 0:
        raise ValueError(f"ahead and behind must be >= 0 lamps, got ahead={ahead}, behind={behind}")
    if not (math.isfinite(max_distance_m) and max_distance_m >= 0.0):
        raise ValueError(f"max_distance_m must be a finite distance >= 0, got {max_distance_m!r}")
    sources = graph.edge_sources()
    in_range = graph.distance_m <= np.float32(max_distance_m)
    keep = np.zeros(graph.n_edges, dtype=np.bool_)
    for side_value, limit in ((1, ahead), (-1, behind)):
        candidates = np.flatnonzero(in_range & (graph.side == side_value))
        rows = sources[candidates]
        # Rank of each candidate among its lamp's candidates on this side: CSR order is by
        # lamp then distance, so it is the position minus where the lamp's run starts.
        first = np.searchsorted(rows, rows, side="left")
        rank = np.arange(len(candidates)) - first
        keep[candidates[rank < limit]] = True
    counts = np.bincount(sources[keep], minlength=graph.n_lamps)
    indptr = np.zeros(graph.n_lamps + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return NeighbourGraph(indptr, graph.indices[keep], graph.distance_m[keep], graph.side[keep])


def order_along_axis(
    x_m: npt.ArrayLike, y_m: npt.ArrayLike, group_index: npt.ArrayLike
) -> IndexArray:
    """Position (0, 1, ...) of each lamp along its group's principal axis, west (or south) first.

    Used for named streets; a bent street is ordered by its overall axis, which is good enough
    for "N lamps ahead" on the short distances presence lighting looks at.
    """
    x, y = _check_xy(x_m, y_m)
    groups = np.asarray(group_index, dtype=np.int64)
    if groups.shape != x.shape:
        raise ValueError(f"group_index must have one entry per lamp ({len(x)}), got {groups.shape}")
    if len(x) == 0:
        return np.empty(0, dtype=np.int32)
    if groups.min() < 0:
        raise ValueError("group_index must be >= 0")
    n_groups = int(groups.max()) + 1
    count = np.bincount(groups, minlength=n_groups).astype(np.float64)
    safe = np.maximum(count, 1.0)
    mean_x = np.bincount(groups, weights=x, minlength=n_groups) / safe
    mean_y = np.bincount(groups, weights=y, minlength=n_groups) / safe
    dx = x - mean_x[groups]
    dy = y - mean_y[groups]
    sxx = np.bincount(groups, weights=dx * dx, minlength=n_groups)
    syy = np.bincount(groups, weights=dy * dy, minlength=n_groups)
    sxy = np.bincount(groups, weights=dx * dy, minlength=n_groups)
    theta = 0.5 * np.arctan2(2.0 * sxy, sxx - syy)
    along = dx * np.cos(theta)[groups] + dy * np.sin(theta)[groups]
    order = np.lexsort((np.arange(len(x)), along, groups))
    group_start = np.concatenate(([0], np.cumsum(np.bincount(groups, minlength=n_groups))[:-1]))
    position = np.empty(len(x), dtype=np.int32)
    position[order] = np.arange(len(x)) - group_start[groups[order]]
    return position


def street_runs(
    x_m: npt.ArrayLike,
    y_m: npt.ArrayLike,
    *,
    link_m: float = DEFAULT_RUN_LINK_M,
    max_turn_deg: float = DEFAULT_RUN_MAX_TURN_DEG,
) -> tuple[IndexArray, IndexArray]:
    """Chain lamps into runs along streets: ``(run_index, order_on_run)`` per lamp.

    See the module docstring for the heuristic. Runs are numbered in order of their
    lowest-indexed end lamp; a lamp with no partner within ``link_m`` is a run of its own.
    """
    x, y = _check_xy(x_m, y_m)
    if not (math.isfinite(link_m) and link_m > 0.0):
        raise ValueError(f"link_m must be a finite distance > 0, got {link_m!r}")
    if not 0.0 < max_turn_deg <= 180.0:
        raise ValueError(f"max_turn_deg must be within (0, 180], got {max_turn_deg!r}")
    n = len(x)
    # A lamp's neighbours along its street are almost always among its four nearest.
    indptr, targets, dist = _nearest(x, y, link_m, 4)
    sources = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
    low = np.minimum(sources, targets)
    high = np.maximum(sources, targets)
    pair_key, first = np.unique(low * max(n, 1) + high, return_index=True)
    by_length = np.lexsort((pair_key, dist[first]))
    link_a = low[first][by_length].tolist()
    link_b = high[first][by_length].tolist()

    xs = x.tolist()
    ys = y.tolist()
    # Straight through is a 180 degree angle between the two links at a lamp; a turn of t
    # degrees leaves cos(angle) = -cos(t), and sharper turns give larger cosines.
    max_cos = -math.cos(math.radians(max_turn_deg))
    first_link = [-1] * n
    second_link = [-1] * n
    other_end = list(range(n))

    def straight_enough(at: int, linked: int, new: int) -> bool:
        ax, ay = xs[linked] - xs[at], ys[linked] - ys[at]
        bx, by = xs[new] - xs[at], ys[new] - ys[at]
        norm = math.hypot(ax, ay) * math.hypot(bx, by)
        return norm == 0.0 or (ax * bx + ay * by) <= max_cos * norm

    for a, b in zip(link_a, link_b, strict=True):
        if second_link[a] >= 0 or second_link[b] >= 0 or other_end[a] == b:
            continue
        if first_link[a] >= 0 and not straight_enough(a, first_link[a], b):
            continue
        if first_link[b] >= 0 and not straight_enough(b, first_link[b], a):
            continue
        end_a, end_b = other_end[a], other_end[b]
        other_end[end_a], other_end[end_b] = end_b, end_a
        for lamp, partner in ((a, b), (b, a)):
            if first_link[lamp] < 0:
                first_link[lamp] = partner
            else:
                second_link[lamp] = partner

    run_index = np.full(n, -1, dtype=np.int32)
    order_on_run = np.zeros(n, dtype=np.int32)
    run_list = run_index.tolist()
    order_list = order_on_run.tolist()
    runs = 0
    for lamp in range(n):
        if run_list[lamp] >= 0 or second_link[lamp] >= 0:
            continue
        far = other_end[lamp]
        start = lamp if (xs[lamp], ys[lamp]) <= (xs[far], ys[far]) else far
        previous, current, position = -1, start, 0
        while current >= 0:
            run_list[current] = runs
            order_list[current] = position
            following = (
                first_link[current] if first_link[current] != previous else second_link[current]
            )
            previous, current, position = current, following, position + 1
        runs += 1
    return np.asarray(run_list, dtype=np.int32), np.asarray(order_list, dtype=np.int32)
