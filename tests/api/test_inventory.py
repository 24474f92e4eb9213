"""Lamps, bulk import with the importer's per-row report, groups, pagination, problem shape."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import httpx

from tests.api.conftest import Api, assert_problem, lamp_body, make_group

CSV_MAPPING = {
    "id_column": "id",
    "x_column": "lon",
    "y_column": "lat",
    "wattage_column": "watts",
    "class_column": "class",
    "street_column": "street",
    "group_column": "zone",
}
CSV = (
    "id,lon,lat,watts,class,street,zone\n"
    "A1,-2.5900,51.4500,35,P4,High St,centre\n"
    "A2,-2.5903,51.4500,70,P3,High St,centre\n"
    "A3,-2.5906,151.4500,35,P4,High St,centre\n"
    "A2,-2.5909,51.4500,35,P4,High St,centre\n"
    "A4,-2.5912,51.4500,lots,P4,Mill Lane,edge\n"
    "A5,-2.5915,51.4500,35,Q9,Mill Lane,edge\n"
    "A6,-2.5918,51.4501,45,P5,Mill Lane,edge\n"
)


def _import(
    api: Api, content: bytes, name: str, mapping: Mapping[str, object] | None = None
) -> httpx.Response:
    data = {"mapping": json.dumps(mapping)} if mapping is not None else {}
    return api.client.post(
        "/api/v1/lamps/import",
        files={"file": (name, content, "application/octet-stream")},
        data=data,
        headers=api.north.engineer,
    )


def test_lamp_crud(api: Api) -> None:
    headers = api.north.engineer
    created = api.client.post(
        "/api/v1/lamps", json=lamp_body("L-1", street="Quay"), headers=headers
    )
    assert created.status_code == 201
    assert created.json()["street"] == "Quay" and created.json()["group_id"] is None
    assert_problem(
        api.client.post("/api/v1/lamps", json=lamp_body("L-1"), headers=headers),
        409,
        "a lamp with this id already exists in your council; PATCH it instead",
    )
    patched = api.client.patch(
        "/api/v1/lamps/L-1", json={"rated_power_w": 50.0, "lighting_class": "P3"}, headers=headers
    )
    assert patched.json()["rated_power_w"] == 50.0
    assert patched.json()["lighting_class"] == "P3"
    assert (
        api.client.get("/api/v1/lamps/L-1", headers=api.north.viewer).json()["rated_power_w"]
        == 50.0
    )
    assert api.client.delete("/api/v1/lamps/L-1", headers=headers).status_code == 204
    assert_problem(
        api.client.get("/api/v1/lamps/L-1", headers=headers),
        404,
        "there is no such lamp in your council",
    )
    actions = [
        e["action"]
        for e in api.client.get("/api/v1/audit", headers=api.north.viewer).json()["items"]
        if e["target"] == "lamp:L-1"
    ]
    assert actions == ["lamp.delete", "lamp.update", "lamp.create"]


def test_bad_lamp_input_lists_every_problem(api: Api) -> None:
    body = lamp_body("bad/id", lat_deg=95.0, rated_power_w=-1, lighting_class="Z9", colour="red")
    body = assert_problem(
        api.client.post("/api/v1/lamps", json=body, headers=api.north.engineer),
        422,
        "the request is invalid (5 problem(s))",
    )
    where = [e["where"] for e in body["errors"]]
    assert where == [
        "body.lat_deg",
        "body.rated_power_w",
        "body.lighting_class",
        "body.lamp_id",
        "body.colour",
    ]
    messages = dict(zip(where, [e["message"] for e in body["errors"]], strict=True))
    assert messages["body.lat_deg"] == "Input should be less than or equal to 90"
    assert messages["body.rated_power_w"] == "Input should be greater than 0"
    assert (
        messages["body.colour"] == "unknown field; check the spelling against the OpenAPI document"
    )


def test_csv_import_reports_bad_rows_and_stores_good_ones(api: Api) -> None:
    response = _import(api, CSV.encode(), "bristol.csv", CSV_MAPPING)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["source"] == "bristol.csv"
    assert report["rows_read"] == 7
    assert report["rows_imported"] == 3
    assert (report["created"], report["updated"]) == (3, 0)
    assert report["duplicate_ids"] == ["A2"]
    assert report["groups_created"] == ["centre", "edge"]
    assert (
        report["row_numbering"]
        == "spreadsheet row: the header is row 1, the first data row is row 2"
    )
    assert report["bad_rows"] == [
        {
            "row_number": 4,
            "reason": "latitude 151.45 is outside [-90, 90]; check x_column/y_column are not "
            "swapped and source_crs (EPSG:4326) is right",
        },
        {"row_number": 5, "reason": "duplicate lamp id 'A2' (first on row 3)"},
        {"row_number": 6, "reason": report["bad_rows"][2]["reason"]},
        {
            "row_number": 7,
            "reason": "lighting class 'Q9' in column 'class' is not an EN 13201 class "
            "(M1-M6, C0-C5, P1-P6)",
        },
    ]
    assert report["bad_rows"][2]["reason"].startswith("wattage in column 'watts': ")
    lamps = api.client.get("/api/v1/lamps", headers=api.north.viewer).json()
    assert [lamp["lamp_id"] for lamp in lamps["items"]] == ["A1", "A2", "A6"]
    assert {lamp["lamp_id"]: lamp["group_name"] for lamp in lamps["items"]} == {
        "A1": "centre",
        "A2": "centre",
        "A6": "edge",
    }
    assert lamps["items"][1]["rated_power_w"] == 70.0
    # A second import updates what exists.
    again = _import(api, CSV.encode(), "bristol.csv", CSV_MAPPING).json()
    assert (again["created"], again["updated"], again["groups_created"]) == (0, 3, [])
    audit = api.client.get(
        "/api/v1/audit", params={"action": "lamp.import"}, headers=api.north.viewer
    )
    assert audit.json()["total"] == 2
    assert audit.json()["items"][1]["detail"]["bad_rows"] == 4


def test_geojson_import(api: Api) -> None:
    features = [
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [-1.55 + 0.001 * k, 53.8]},
            "properties": {"asset": f"G{k}", "watts": "60"},
        }
        for k in range(3)
    ]
    features.append(
        {
            "type": "Feature",
            "geometry": {"type": "LineString", "coordinates": []},
            "properties": {"asset": "G9", "watts": "60"},
        }
    )
    document = json.dumps({"type": "FeatureCollection", "features": features}).encode()
    report = _import(
        api, document, "leeds.geojson", {"id_column": "asset", "wattage_column": "watts"}
    ).json()
    assert (report["rows_read"], report["created"]) == (4, 3)
    assert report["bad_rows"] == [
        {"row_number": 4, "reason": "geometry type 'LineString' is not supported; expected Point"}
    ]
    assert report["streets_derived"] is True


def test_unreadable_inventory_is_a_problem(api: Api) -> None:
    assert_problem(
        _import(api, b"id,lon\n1,2\n", "x.csv", CSV_MAPPING),
        422,
        "x.csv lacks the mapped columns 'lat' (mapping key y_column), 'watts' (mapping key "
        "wattage_column), 'class' (mapping key class_column), 'street' (mapping key "
        "street_column), 'zone' (mapping key group_column); available columns: 'id', 'lon'. "
        "Fix the column mapping or the file.",
    )
    assert_problem(
        api.client.post(
            "/api/v1/lamps/import",
            files={"file": ("x.csv", b"a", "text/csv")},
            data={"mapping": "{not json"},
            headers=api.north.engineer,
        ),
        422,
        "the column mapping is not valid JSON",
        [
            {
                "where": "mapping",
                "message": "not valid JSON: Expecting property name enclosed in double quotes at position 1",
            }
        ],
    )


def test_upload_and_body_size_limits(tmp_path: Path) -> None:
    from tests.api.conftest import make_api

    for api in make_api(tmp_path, max_upload_bytes=2048, max_body_bytes=1024):
        big = b"id,lon,lat\n" + b"x,1,2\n" * 1000
        assert_problem(
            _import(api, big, "big.csv"),
            413,
            "the request body is larger than 2048 bytes, the most this endpoint accepts",
        )
        assert_problem(
            api.client.post(
                "/api/v1/groups",
                json={"name": "g", "description": "d" * 1500},
                headers=api.north.engineer,
            ),
            413,
            "the request body is larger than 1024 bytes, the most this endpoint accepts",
        )
        # Chunked, with no Content-Length: counted as it arrives.
        chunks = iter([b'{"name": "g", "description": "', b"d" * 800, b"d" * 800, b'"}'])
        assert_problem(
            api.client.post(
                "/api/v1/groups",
                content=chunks,
                headers={**api.north.engineer, "Content-Type": "application/json"},
            ),
            413,
            "the request body is larger than 1024 bytes, the most this endpoint accepts",
        )
        assert api.client.get("/api/v1/groups", headers=api.north.viewer).json()["total"] == 0


def test_groups_and_membership(api: Api) -> None:
    headers = api.north.engineer
    first = make_group(api, api.north, "centre", ["C1", "C2", "C3"])
    second = api.client.post("/api/v1/groups", json={"name": "edge"}, headers=headers).json()["id"]
    assert_problem(
        api.client.post("/api/v1/groups", json={"name": "edge"}, headers=headers),
        409,
        "a group with this name already exists in your council",
    )
    moved = api.client.post(
        f"/api/v1/groups/{second}/lamps", json={"lamp_ids": ["C1", "C2"]}, headers=headers
    )
    assert moved.json() == {"group_id": second, "added": 2, "lamps": 2}
    assert api.client.get(f"/api/v1/groups/{first}", headers=headers).json()["lamps"] == 1
    assert_problem(
        api.client.post(
            f"/api/v1/groups/{second}/lamps", json={"lamp_ids": ["C3", "nope"]}, headers=headers
        ),
        404,
        "there is no such lamp in your council",
    )
    assert api.client.get(f"/api/v1/groups/{first}", headers=headers).json()["lamps"] == 1
    removed = api.client.delete(f"/api/v1/groups/{second}/lamps/C1", headers=headers)
    assert removed.status_code == 204
    members = api.client.get(f"/api/v1/groups/{second}/lamps", headers=headers).json()
    assert [lamp["lamp_id"] for lamp in members["items"]] == ["C2"]
    renamed = api.client.patch(
        f"/api/v1/groups/{second}", json={"name": "outskirts"}, headers=headers
    )
    assert renamed.json()["name"] == "outskirts"
    assert api.client.get("/api/v1/lamps/C2", headers=headers).json()["group_name"] == "outskirts"
    assert api.client.delete(f"/api/v1/groups/{second}", headers=headers).status_code == 204
    assert api.client.get("/api/v1/lamps/C2", headers=headers).json()["group_id"] is None


def test_pagination(api: Api) -> None:
    for k in range(7):
        api.client.post("/api/v1/lamps", json=lamp_body(f"P{k}"), headers=api.north.engineer)
    page = api.client.get(
        "/api/v1/lamps", params={"limit": 3, "offset": 3}, headers=api.north.viewer
    ).json()
    assert [lamp["lamp_id"] for lamp in page["items"]] == ["P3", "P4", "P5"]
    assert (page["total"], page["limit"], page["offset"]) == (7, 3, 3)
    last = api.client.get(
        "/api/v1/lamps", params={"limit": 3, "offset": 6}, headers=api.north.viewer
    ).json()
    assert [lamp["lamp_id"] for lamp in last["items"]] == ["P6"]
    assert_problem(
        api.client.get("/api/v1/lamps", params={"limit": 501}, headers=api.north.viewer),
        422,
        "the request is invalid (1 problem(s))",
        [{"where": "query.limit", "message": "Input should be less than or equal to 500"}],
    )


def test_unknown_path_and_method_are_problems(api: Api) -> None:
    assert_problem(
        api.client.get("/api/v1/nothing", headers=api.north.viewer),
        404,
        "no such resource; see /api/v1/openapi.json for the paths",
    )
    assert_problem(
        api.client.put("/api/v1/lamps", headers=api.north.viewer),
        405,
        "this method is not allowed on this path; see the OpenAPI document",
    )
