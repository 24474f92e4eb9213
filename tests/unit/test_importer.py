"""Importing council inventories: the real Bristol and Champaign files, and files with faults."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pyproj import Geod

from domain.errors import InventoryError, ValidationIssue
from domain.importer import (
    BadRow,
    ColumnMapping,
    ImportReport,
    import_csv,
    import_geojson,
    import_inventory,
)
from domain.inventory import CLASS_ORDER, InventoryArrays
from domain.records import DimmingCurve, LightingClass

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = REPO_ROOT / ".." / "shared" / "data"
BRISTOL_CSV = DATA_DIR / "bristol_streetlights_lonlat.csv"
CHAMPAIGN_RAW_CSV = DATA_DIR / "champaign_il_streetlights_raw.csv"
CHAMPAIGN_LATLON_CSV = DATA_DIR / "champaign_il_streetlights_latlon.csv"
CHAMPAIGN_MAPPING = REPO_ROOT / "streetlight" / "samples" / "champaign_mapping.yaml"


def shared_file(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"shared data set missing: {path} (see ../shared/data/README.md)")
    return path


@pytest.fixture(scope="module")
def bristol() -> tuple[InventoryArrays, ImportReport]:
    return import_csv(shared_file(BRISTOL_CSV), ColumnMapping(council_id="bristol"))


@pytest.fixture(scope="module")
def champaign() -> tuple[InventoryArrays, ImportReport]:
    return import_csv(shared_file(CHAMPAIGN_RAW_CSV), ColumnMapping.from_file(CHAMPAIGN_MAPPING))


@pytest.fixture(scope="module")
def champaign_raw_rows() -> list[dict[str, str]]:
    with shared_file(CHAMPAIGN_RAW_CSV).open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


# --- Bristol -----------------------------------------------------------------------------


def test_bristol_imports_every_lamp(bristol: tuple[InventoryArrays, ImportReport]) -> None:
    inventory, report = bristol
    assert report.rows_read == 49_451
    assert report.rows_imported == 49_451
    assert len(inventory) == 49_451
    assert report.bad_rows == ()
    assert report.wattage_missing == 0
    assert inventory.lamp_id[0] == "bristol-2"  # generated from the spreadsheet row
    assert inventory.lamp_id[-1] == "bristol-49452"
    assert len(set(inventory.lamp_id.tolist())) == 49_451


def test_bristol_positions_are_in_bristol(bristol: tuple[InventoryArrays, ImportReport]) -> None:
    inventory, _ = bristol
    lon, lat = inventory.lon_deg, inventory.lat_deg
    assert -2.7030 < lon.min() < -2.7020
    assert 51.3992 < lat.min() < 51.4002
    assert 51.5377 < lat.max() < 51.5387
    # One lamp stands out east, near Marshfield (-2.235, 51.461); every other is west of -2.50.
    assert -2.2355 < lon.max() < -2.2345
    assert np.count_nonzero(lon > -2.50) == 1
    assert lon[lon < -2.45].max() < -2.511
    # The first data row, unchanged by the import.
    assert (lon[0], lat[0]) == (-2.536601140327318, 51.49049679592616)


def test_bristol_streets_are_derived_runs(bristol: tuple[InventoryArrays, ImportReport]) -> None:
    inventory, report = bristol
    assert report.streets_derived
    assert len(inventory.street_names) == inventory.street_index.max() + 1
    assert inventory.street_names[0] == "run-0"
    sizes = np.bincount(inventory.street_index)
    assert sizes.min() >= 1
    assert np.median(sizes) >= 2  # runs chain lamps, not one street per lamp
    for street in (0, int(np.argmax(sizes))):
        orders = inventory.order_on_street[inventory.street_index == street]
        assert sorted(orders.tolist()) == list(range(sizes[street]))


def test_bristol_defaults_fill_what_the_file_lacks(
    bristol: tuple[InventoryArrays, ImportReport],
) -> None:
    inventory, _ = bristol
    assert inventory.council_id == "bristol"
    assert np.all(inventory.rated_power_w == 100.0)
    assert np.all(inventory.standby_power_w == 0.5)
    assert np.all(inventory.class_index == CLASS_ORDER.index(LightingClass.P4))
    assert inventory.dali.all()
    lamp = inventory.lamp(0)
    assert lamp.street.startswith("run-") and lamp.group == "" and lamp.lamp_type == ""


# --- Champaign ---------------------------------------------------------------------------


def test_champaign_imports_every_row(champaign: tuple[InventoryArrays, ImportReport]) -> None:
    inventory, report = champaign
    assert report.rows_read == 4_556
    assert report.rows_imported == 4_556
    assert report.bad_rows == ()  # every position reprojects and every wattage parses
    assert report.duplicate_ids == ()
    assert inventory.council_id == "champaign-il"
    assert inventory.lamp_id[:3].tolist() == ["1", "2", "3"]  # OBJECTID, read past the BOM


def test_champaign_positions_are_in_champaign(
    champaign: tuple[InventoryArrays, ImportReport],
) -> None:
    inventory, _ = champaign
    assert -88.3195 < inventory.lon_deg.min() < -88.3188
    assert -88.2268 < inventory.lon_deg.max() < -88.2262
    assert 40.0651 < inventory.lat_deg.min() < 40.0657
    assert 40.1591 < inventory.lat_deg.max() < 40.1597


def test_champaign_reprojection_matches_the_published_lat_lon(
    champaign: tuple[InventoryArrays, ImportReport],
) -> None:
    inventory, _ = champaign
    with shared_file(CHAMPAIGN_LATLON_CSV).open(encoding="utf-8-sig", newline="") as handle:
        published = {
            row["OBJECTID"]: (float(row["Longitude"]), float(row["Latitude"]))
            for row in csv.DictReader(handle)
        }
    assert set(published) == set(inventory.lamp_id.tolist())
    reference = np.array([published[lamp_id] for lamp_id in inventory.lamp_id.tolist()])
    _, _, offset_m = Geod(ellps="WGS84").inv(
        inventory.lon_deg, inventory.lat_deg, reference[:, 0], reference[:, 1]
    )
    assert np.max(offset_m) < 1.0


def test_champaign_wattages_match_the_data_readme(
    champaign: tuple[InventoryArrays, ImportReport], champaign_raw_rows: list[dict[str, str]]
) -> None:
    inventory, report = champaign
    assert report.wattage_missing == 1_028
    raw = [row["Lamp_Wattage"] for row in champaign_raw_rows]
    power_by_raw: dict[str, set[float]] = {}
    for text, power_w in zip(raw, inventory.rated_power_w.tolist(), strict=True):
        power_by_raw.setdefault(text, set()).add(power_w)
    # The README's most common values, in its order, and the combined heads.
    expected = {
        "100": 100.0,
        "250": 250.0,
        "55": 55.0,
        "150": 150.0,
        "286(LED)": 286.0,
        "70": 70.0,
        "85": 85.0,
        "66 (LED)": 66.0,
        "250/85": 335.0,
        "250/100": 350.0,
        "286(LED)/66(LED)": 352.0,
        "": 100.0,  # missing: default_power_w from the sample mapping
        " ": 100.0,
    }
    for text, power_w in expected.items():
        assert power_by_raw[text] == {power_w}, text
    common = [text for text, _ in Counter(t for t in raw if t.strip()).most_common(8)]
    assert common == ["100", "250", "55", "150", "286(LED)", "70", "85", "66 (LED)"]
    assert np.count_nonzero(inventory.rated_power_w == 335.0) == 61


def test_champaign_lamp_types_and_groups(
    champaign: tuple[InventoryArrays, ImportReport],
) -> None:
    inventory, _ = champaign
    types = Counter(inventory.lamp_type.tolist())
    assert types["HPS"] == 2_236
    assert types["IND"] == 818
    # The README's 773 LEDs, plus blank-type rows whose wattage says "(LED)".
    assert types["LED"] >= 773
    assert types[""] + (types["LED"] - 773) == 649
    assert len(set(inventory.group.tolist())) == 152
    assert inventory.lamp(0).group == "SL006"


# --- mappings ----------------------------------------------------------------------------


def test_sample_mapping_file_loads() -> None:
    mapping = ColumnMapping.from_file(CHAMPAIGN_MAPPING)
    assert mapping.id_column == "OBJECTID"
    assert (mapping.x_column, mapping.y_column, mapping.source_crs) == ("X", "Y", "EPSG:3857")
    assert mapping.group_column == "Controller_ID"
    assert mapping.default_class is LightingClass.P4
    assert mapping.dimming_curve is DimmingCurve.DALI


def test_mapping_from_json_file(tmp_path: Path) -> None:
    path = tmp_path / "mapping.json"
    path.write_text(json.dumps({"council_id": "x", "default_class": "m3", "default_power_w": 70}))
    mapping = ColumnMapping.from_file(path)
    assert mapping.default_class is LightingClass.M3
    assert mapping.default_power_w == 70.0


def test_mapping_refuses_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text("council_id: x\nlon_col: lon\n")
    with pytest.raises(
        InventoryError, match=r"unknown key\(s\) 'lon_col'; known keys are .*x_column"
    ):
        ColumnMapping.from_file(path)


def test_mapping_names_each_wrong_key(tmp_path: Path) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text(
        "x_column: 5\ndefault_power_w: lots\nmissing_wattage_is_error: 'no'\ndefault_class: Z9\n"
    )
    with pytest.raises(InventoryError) as caught:
        ColumnMapping.from_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: column mapping is invalid (4 problem(s)):")
    assert "x_column: must be a string, got 5" in message
    assert "default_power_w: must be a number, got 'lots'" in message
    assert "missing_wattage_is_error: must be true or false, got 'no'" in message
    assert "default_class: must be one of M1, M2" in message


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"source_crs": "EPSG:999999"}, "source_crs: 'EPSG:999999' is not a CRS pyproj knows"),
        ({"default_power_w": 0}, "default_power_w: must be within (0, 5000] W, got 0.0"),
        ({"standby_power_w": -1}, "standby_power_w: must be >= 0 W, got -1.0"),
        ({"x_column": "a", "y_column": "a"}, "y_column: must differ from x_column ('a')"),
        ({"encoding": "utf-99"}, "encoding: 'utf-99' is not a known text encoding"),
        ({"wattage_column": " "}, "wattage_column: must name a column"),
        ({"delimiter": ";;"}, "delimiter: must be one character"),
    ],
)
def test_mapping_values_are_checked(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InventoryError) as caught:
        ColumnMapping(**options)
    assert message in str(caught.value)


def test_mapping_file_must_be_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "mapping.yaml"
    path.write_text("- x_column\n- y_column\n")
    with pytest.raises(InventoryError, match="must hold one mapping of key: value pairs, got list"):
        ColumnMapping.from_file(path)


def test_mapping_schema_version_is_checked() -> None:
    with pytest.raises(InventoryError, match="schema_version 2 is not supported"):
        ColumnMapping.from_dict({"schema_version": 2})


# --- bad rows ----------------------------------------------------------------------------

FAULTY_CSV = """\
id,lon,lat,watts,class,street,group
A1,-2.60,51.45,100,P3,High St,G1
A2,,51.45,100,,,
A3,abc,51.45,100,,,
A4,0,0,100,,,
A5,200,51.45,100,,,
A6,-2.60,95,100,,,
A1,-2.61,51.46,100,,,
,-2.61,51.46,100,,,
A7,-2.61,51.46,abc,,,
A8,-2.61,51.46,,p9,,
A9,-2.6003,51.4501,250/85,m3,High St,G2
A10,-2.60,51.45,100,,,,extra
A11,nan,51.45,100,,,

A12,-2.605,51.455,70 W,,,,
A13,xyz,,-5,,,
A14,-2.61,51.46,Not Specified,,,
"""

FAULTY_MAPPING = ColumnMapping(
    council_id="test",
    id_column="id",
    x_column="lon",
    y_column="lat",
    wattage_column="watts",
    class_column="class",
    street_column="street",
    group_column="group",
    default_power_w=55.0,
)

SWAP_HINT = "check x_column/y_column are not swapped and source_crs (EPSG:4326) is right"


def test_bad_rows_are_reported_with_spreadsheet_row_numbers(tmp_path: Path) -> None:
    path = tmp_path / "faulty.csv"
    path.write_text(FAULTY_CSV, encoding="utf-8")
    inventory, report = import_csv(path, FAULTY_MAPPING)
    assert report.bad_rows == (
        BadRow(3, "missing longitude in column 'lon'"),
        BadRow(4, "longitude 'abc' in column 'lon' is not a number"),
        BadRow(5, "position is (0, 0), a placeholder for an unknown location"),
        BadRow(6, f"longitude 200 is outside [-180, 180]; {SWAP_HINT}"),
        BadRow(7, f"latitude 95 is outside [-90, 90]; {SWAP_HINT}"),
        BadRow(8, "duplicate lamp id 'A1' (first on row 2)"),
        BadRow(9, "empty lamp id in column 'id'"),
        BadRow(
            10,
            "wattage in column 'watts': 'abc' is not a wattage; "
            "write watts as a number such as '250', '250/85' or '66 (LED)'",
        ),
        BadRow(
            11,
            "lighting class 'p9' in column 'class' is not an EN 13201 class (M1-M6, C0-C5, P1-P6)",
        ),
        BadRow(13, "row has 8 fields but the header has 7"),
        BadRow(14, "longitude 'nan' in column 'lon' is not a finite number"),
        # Row 15 is blank: skipped, but it keeps its number so later rows match a spreadsheet.
        BadRow(
            17,
            "longitude 'xyz' in column 'lon' is not a number; "
            "missing latitude in column 'lat'; "
            "wattage in column 'watts': wattage must be positive, got '-5'",
        ),
    )
    assert report.rows_read == 16
    assert report.rows_imported == 4
    assert report.rows_imported + len(report.bad_rows) == report.rows_read
    assert report.duplicate_ids == ("A1",)
    assert report.wattage_missing == 2  # A8 (refused for its class) and A14
    assert report.issues()[0] == ValidationIssue("row 3", "missing longitude in column 'lon'")

    # Good rows beside the bad ones are kept, with everything they carry.
    lamps = {lamp.lamp_id: lamp for lamp in inventory.lamps()}
    assert list(lamps) == ["A1", "A9", "A12", "A14"]
    assert lamps["A1"].lighting_class is LightingClass.P3
    assert lamps["A1"].group == "G1"
    assert lamps["A9"].rated_power_w == 335.0
    assert lamps["A9"].lighting_class is LightingClass.M3
    assert lamps["A12"].rated_power_w == 70.0  # a trailing empty field is tolerated
    assert lamps["A14"].rated_power_w == 55.0  # missing wattage: the mapping's default
    assert lamps["A14"].lighting_class is LightingClass.P4
    # Named streets keep their names and are ordered west first; unnamed lamps get runs.
    assert (lamps["A9"].street, lamps["A9"].order_on_street) == ("High St", 0)
    assert (lamps["A1"].street, lamps["A1"].order_on_street) == ("High St", 1)
    assert lamps["A12"].street.startswith("run-")
    assert report.streets_derived


def test_missing_wattage_can_be_an_error(tmp_path: Path) -> None:
    path = tmp_path / "lamps.csv"
    path.write_text("lon,lat,watts\n-2.6,51.45,\n-2.6,51.46,70\n")
    mapping = ColumnMapping(
        x_column="lon", y_column="lat", wattage_column="watts", missing_wattage_is_error=True
    )
    inventory, report = import_csv(path, mapping)
    assert report.bad_rows == (
        BadRow(2, "no wattage in column 'watts' (missing_wattage_is_error is set)"),
    )
    assert report.wattage_missing == 1
    assert inventory.lamp_id.tolist() == ["lamp-3"]


def test_projected_source_crs_is_reprojected_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "mercator.csv"
    # Champaign's OBJECTID 1 (with the BOM the council export starts with), a (0, 0)
    # placeholder, and two positions Web Mercator cannot hold (pyproj would wrap the second).
    path.write_text(
        "\ufeffX,Y\n-9824847.80767025,4887225.98189152\n0,0\n1e30,1e30\n30000000,4887225\n"
    )
    mapping = ColumnMapping(x_column="X", y_column="Y", source_crs="EPSG:3857", id_prefix="cu")
    inventory, report = import_csv(path, mapping)
    assert inventory.lamp_id.tolist() == ["cu-2"]
    assert inventory.lon_deg[0] == pytest.approx(-88.25810949778356, abs=1e-9)
    assert inventory.lat_deg[0] == pytest.approx(40.14630655021276, abs=1e-9)
    assert report.bad_rows[0] == BadRow(
        3, "position is (0, 0), a placeholder for an unknown location"
    )
    assert report.bad_rows[1] == BadRow(
        4,
        "(1e+30, 1e+30) is outside what EPSG:3857 can represent, so it cannot be reprojected "
        "to WGS84; check the values and source_crs",
    )
    assert report.bad_rows[2].row_number == 5
    assert len(report.bad_rows) == 3


def test_missing_columns_make_the_file_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "lamps.csv"
    path.write_text("Longitude,Latitude,Watts\n-2.6,51.45,100\n")
    mapping = ColumnMapping(x_column="lon", y_column="Latitude", wattage_column="power")
    with pytest.raises(InventoryError) as caught:
        import_csv(path, mapping)
    assert str(caught.value) == (
        f"{path} lacks the mapped columns 'lon' (mapping key x_column), "
        "'power' (mapping key wattage_column); "
        "available columns: 'Longitude', 'Latitude', 'Watts'. Fix the column mapping or the file."
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty; expected a header row naming the columns"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "is not utf-8-sig text"),
        (b"longitude,latitude\n-2.6,51.4\x00\n", "contains NUL characters, so it is not CSV"),
        ("longitude,latitude\n".encode("utf-16-le"), "contains NUL characters"),
        (b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00\xb2", "is not utf-8-sig text"),
    ],
)
def test_unreadable_files_raise(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "lamps.csv"
    path.write_bytes(content)
    with pytest.raises(InventoryError, match=message):
        import_csv(path, ColumnMapping())


def test_a_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="does not exist"):
        import_csv(tmp_path / "nowhere.csv", ColumnMapping())


def test_a_file_with_only_a_header_imports_nothing(tmp_path: Path) -> None:
    path = tmp_path / "lamps.csv"
    path.write_text("longitude,latitude\n")
    inventory, report = import_csv(path, ColumnMapping())
    assert len(inventory) == 0
    assert (report.rows_read, report.rows_imported, report.bad_rows) == (0, 0, ())


# --- GeoJSON -----------------------------------------------------------------------------


def point(lon: object, lat: object, **properties: object) -> dict[str, object]:
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [lon, lat]},
        "properties": properties,
    }


def test_geojson_points_import_and_other_geometries_are_bad_rows(tmp_path: Path) -> None:
    features: list[object] = [
        point(-2.6, 51.45, asset=17, watts="66 (LED)", type=""),
        {
            "type": "Feature",
            "geometry": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]},
            "properties": {"asset": 18},
        },
        {"type": "Feature", "geometry": None, "properties": {"asset": 19}},
        point("-2.6", 51.45, asset=20),
        point(-2.6, 99.0, asset=21),
        point(-2.61, 51.46, asset=17.0, watts=250),
        "not a feature",
        point(-2.61, 51.46, asset="22", watts=250.0, type="HPS"),
    ]
    path = tmp_path / "lamps.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    mapping = ColumnMapping(id_column="asset", wattage_column="watts", lamp_type_column="type")
    inventory, report = import_inventory(path, mapping)
    assert report.bad_rows == (
        BadRow(2, "geometry type 'LineString' is not supported; expected Point"),
        BadRow(3, "feature has no geometry"),
        BadRow(4, "Point coordinates must be [x, y] numbers, got ['-2.6', 51.45]"),
        BadRow(5, f"latitude 99 is outside [-90, 90]; {SWAP_HINT}"),
        BadRow(6, "duplicate lamp id '17' (first on row 1)"),
        BadRow(7, "not a GeoJSON Feature object"),
    )
    assert report.row_numbering.startswith("feature position")
    assert report.issues()[0].where == "feature 2"
    assert report.rows_read == 8
    assert report.wattage_missing == 4  # features 2-5 have no "watts"; 7 is not a feature
    assert inventory.lamp_id.tolist() == ["17", "22"]
    assert inventory.rated_power_w.tolist() == [66.0, 250.0]
    assert inventory.lamp_type.tolist() == ["LED", "HPS"]  # the wattage hint fills a blank type


def test_geojson_missing_properties_and_wrong_documents_raise(tmp_path: Path) -> None:
    path = tmp_path / "lamps.geojson"
    path.write_text(
        json.dumps({"type": "FeatureCollection", "features": [point(-2.6, 51.45, id=1)]})
    )
    with pytest.raises(
        InventoryError,
        match=r"lacks the mapped properties 'asset' \(mapping key id_column\); available properties: 'id'",
    ):
        import_geojson(path, ColumnMapping(id_column="asset"))
    path.write_text(json.dumps({"type": "Feature"}))
    with pytest.raises(InventoryError, match="must be a GeoJSON FeatureCollection, got 'Feature'"):
        import_geojson(path, ColumnMapping())
    path.write_text("{not json")
    with pytest.raises(InventoryError, match=r"is not valid JSON \(line 1, column 2"):
        import_geojson(path, ColumnMapping())


def test_subset_keeps_only_the_streets_and_curves_it_uses() -> None:
    from domain.inventory import InventoryArrays
    from domain.records import Lamp

    lamps = [
        Lamp(f"L{k}", "c", 0.0, 51.0 + k * 1e-4, 50.0, street=f"S{k % 3}", driver_curve=f"D{k % 2}")
        for k in range(6)
    ]
    inv = InventoryArrays.from_lamps(lamps)
    part = inv.subset([1, 4, 2])  # streets S1, S1, S2; curves D1, D0, D0
    assert part.lamp_id.tolist() == ["L1", "L4", "L2"]
    assert part.street_names == ("S1", "S2")
    assert [part.street_names[i] for i in part.street_index] == ["S1", "S1", "S2"]
    assert [part.driver_curves[i] for i in part.driver_index] == ["D1", "D0", "D0"]
    assert part.lamp(2) == inv.lamp(2)
