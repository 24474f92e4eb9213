"""Hourly count loaders against the real open-data files and against small broken files."""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from simulation.counts import (
    I94_SITE,
    LEEDS_CAMERA_NAMES,
    NS_PER_H,
    CountFileError,
    HourlyCounts,
    load_i94_traffic,
    load_leeds_footfall,
    load_melbourne_pedestrian,
    local_hour_of,
    local_hours_to_utc_ns,
)
from simulation.demand import I94_TRAFFIC_SHAPE

DATA_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
LEEDS = DATA_DIR / "leeds_footfall_hourly_2009-2016.csv.gz"
MELBOURNE = DATA_DIR / "melbourne_pedestrian_hourly_2019-01.csv"
I94 = DATA_DIR / "i94_metro_interstate_traffic_volume_hourly_2012-2018.csv"
UTC = dt.UTC


def shared(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"shared data set missing: {path} (see ../shared/data/README.md)")
    return path


def ns(year: int, month: int, day: int, hour: int = 0) -> int:
    return int(dt.datetime(year, month, day, hour, tzinfo=UTC).timestamp()) * 10**9


@pytest.fixture(scope="module")
def leeds() -> HourlyCounts:
    return load_leeds_footfall(shared(LEEDS))


@pytest.fixture(scope="module")
def melbourne() -> HourlyCounts:
    return load_melbourne_pedestrian(shared(MELBOURNE))


@pytest.fixture(scope="module")
def i94() -> HourlyCounts:
    return load_i94_traffic(shared(I94))


# --- real files --------------------------------------------------------------------------------


def test_leeds_rows_sites_and_report(leeds: HourlyCounts) -> None:
    report = leeds.report
    assert report.rows_read == 554_360
    assert set(leeds.sites) == set(LEEDS_CAMERA_NAMES)
    assert leeds.kind == "footfall" and leeds.tz == "Europe/London"
    assert leeds.hour_start_ns[0] == ns(2009, 1, 1)  # 00:00 GMT
    assert np.all(np.diff(leeds.hour_start_ns) == NS_PER_H)
    # Three days of 2016 appear twice, once per date format: identical, so one row is kept.
    assert len(report.duplicates) == 576 and not any(d.conflicting for d in report.duplicates)
    assert len(report.gaps) > 0 and report.missing_hours > 0
    # The only bad values are counts at the non-existent 01:00 of spring-forward Sundays.
    assert report.bad_values
    assert all("does not exist" in bad.reason for bad in report.bad_values)
    assert all(bad.column == "InCount" and bad.row >= 2 for bad in report.bad_values)
    assert len(report.dst_notes) == 2


def test_leeds_medians_match_the_readme(leeds: HourlyCounts) -> None:
    year = leeds.window(dt.datetime(2016, 1, 1, tzinfo=UTC), dt.datetime(2017, 1, 1, tzinfo=UTC))
    median = year.pooled_profile_by_hour()
    # README: 25-43 people/h per site-hour between 01:00 and 04:00 in 2016, 2,783 at 13:00.
    assert np.all((median[1:5] >= 25) & (median[1:5] <= 43))
    assert median[13] == pytest.approx(2783, abs=1)
    per_site = year.profile_by_hour()
    assert per_site.shape == (8, 24)
    assert np.all(per_site[:, 13] > 20 * per_site[:, 3])


def test_leeds_clock_changes(leeds: HourlyCounts) -> None:
    briggate = leeds.site("Briggate")
    # Autumn 2016: the file's one 01:00 row (3,427, both hours summed) is split over 00:00 and
    # 01:00 UTC; 00:00 BST (1,766) is 23:00 UTC the day before.
    autumn = briggate.window(ns(2016, 10, 29, 23), ns(2016, 10, 30, 3)).counts[0]
    assert autumn.tolist() == [1766.0, 1713.5, 1713.5, 1436.0]
    # Spring 2016: local 00:00 GMT and 02:00 BST are consecutive UTC hours.
    spring = briggate.window(ns(2016, 3, 27, 0), ns(2016, 3, 27, 2)).counts[0]
    assert spring.tolist() == [277.0, 200.0]
    assert leeds.night(dt.date(2016, 10, 29)).n_hours == 19
    assert leeds.night(dt.date(2016, 3, 26)).n_hours == 17
    assert leeds.night(dt.date(2016, 1, 9)).n_hours == 18


def test_melbourne_sites_gaps_and_medians(melbourne: HourlyCounts) -> None:
    assert melbourne.report.rows_read == 744
    assert melbourne.n_sites == 57 and melbourne.n_hours == 744
    assert melbourne.hour_start_ns[0] == ns(2018, 12, 31, 13)  # midnight AEDT
    assert melbourne.report.bad_values == ()  # -1 and "undefined" are gaps, not bad values
    missing = np.isnan(melbourne.counts).sum()
    assert missing == melbourne.report.missing_hours > 0
    median = melbourne.pooled_profile_by_hour()
    # README: 14-37 people/h between 01:00 and 04:00, 744 at 13:00. numpy's median of an even
    # count averages the middle two, so 01:00 comes out as 37.5.
    assert np.all((median[1:5] >= 14) & (median[1:5] <= 38))
    assert median[13] == 744


def test_i94_dedup_gaps_and_medians(i94: HourlyCounts) -> None:
    report = i94.report
    assert report.rows_read == 48_204
    assert i94.sites == (I94_SITE,) and i94.kind == "traffic"
    assert np.count_nonzero(~np.isnan(i94.counts)) == 40_575
    assert len(report.duplicates) == 48_204 - 40_575 - sum(
        len(d.rows) - 2 for d in report.duplicates
    )
    assert not any(d.conflicting for d in report.duplicates)
    assert len(report.gaps) > 0
    median = i94.pooled_profile_by_hour()
    # README (computed before de-duplication): 315-362 veh/h at 02:00-03:00, 6,167 at 16:00.
    # One row per hour shifts them a little: 316, 363 and 6,209.
    assert 300 <= median[2] <= 380 and 300 <= median[3] <= 380
    assert 6_000 <= median[16] <= 6_300
    assert np.nanmax(i94.counts) == 7_280
    # The default traffic shape is this profile, normalised.
    assert np.allclose(median / median.max(), I94_TRAFFIC_SHAPE, atol=6e-4)


def test_window_pads_outside_the_data_and_checks_alignment(melbourne: HourlyCounts) -> None:
    first = int(melbourne.hour_start_ns[0])
    padded = melbourne.window(first - 2 * NS_PER_H, first + 2 * NS_PER_H)
    assert padded.n_hours == 4
    assert np.isnan(padded.counts[:, :2]).all()
    assert np.array_equal(padded.counts[:, 2:], melbourne.counts[:, :2], equal_nan=True)
    with pytest.raises(ValueError, match="not on this grid's hours"):
        melbourne.window(first + 60 * 10**9, first + NS_PER_H)
    with pytest.raises(ValueError, match="timezone-aware"):
        melbourne.window(dt.datetime(2019, 1, 1), dt.datetime(2019, 1, 2))
    with pytest.raises(KeyError, match="Bourke Street Mall"):
        melbourne.site("Nowhere")


# --- local time --------------------------------------------------------------------------------


@pytest.mark.parametrize("tz", ["Europe/London", "America/Chicago", "Australia/Melbourne"])
def test_local_hours_to_utc_agree_with_zoneinfo(tz: str) -> None:
    zone = ZoneInfo(tz)
    start = dt.date(2016, 1, 1).toordinal()
    days = np.repeat(np.arange(start, start + 366), 24)
    hours = np.tile(np.arange(24), 366)
    utc_ns, status = local_hours_to_utc_ns(days, hours, tz)
    for day, hour, got_ns, got_status in zip(
        days.tolist(), hours.tolist(), utc_ns.tolist(), status.tolist(), strict=True
    ):
        d = dt.date.fromordinal(day)
        local = dt.datetime(d.year, d.month, d.day, hour, tzinfo=zone)
        first = local.astimezone(UTC)
        second = local.replace(fold=1).astimezone(UTC)
        back = first.astimezone(zone).replace(tzinfo=None)
        if back != local.replace(tzinfo=None):
            expected_status = 1
        elif first != second:
            expected_status = 2
        else:
            expected_status = 0
        assert got_status == expected_status, (d, hour)
        assert got_ns == int(first.timestamp()) * 10**9, (d, hour)
    assert (status == 1).sum() == 1 and (status == 2).sum() == 1  # one clock change each way


def test_local_hour_of_across_clock_changes() -> None:
    hours = ns(2016, 3, 26) + np.arange(24 * 220, dtype=np.int64) * NS_PER_H
    got = local_hour_of(hours, "Europe/London")
    zone = ZoneInfo("Europe/London")
    expected = [
        dt.datetime.fromtimestamp(t // 10**9, UTC).astimezone(zone).hour for t in hours.tolist()
    ]
    assert got.tolist() == expected


def test_hourly_counts_refuses_bad_arrays() -> None:
    hours = np.array([0, NS_PER_H, 3 * NS_PER_H], dtype=np.int64)
    with pytest.raises(ValueError, match="contiguous hourly grid"):
        HourlyCounts(("a",), hours, np.zeros((1, 3)), "footfall", "UTC")
    with pytest.raises(ValueError, match=">= 0"):
        HourlyCounts(("a",), hours[:2], np.array([[1.0, -1.0]]), "footfall", "UTC")
    with pytest.raises(ValueError, match="IANA"):
        HourlyCounts(("a",), hours[:2], np.zeros((1, 2)), "footfall", "Mars/Olympus")
    counts = HourlyCounts(("a",), hours[:2], np.zeros((1, 2)), "traffic", "UTC")
    with pytest.raises(ValueError, match="read-only"):
        counts.counts[0, 0] = 5.0


# --- small broken files ------------------------------------------------------------------------

LEEDS_HEADER = "Date,InCount,BRCWeek,LocationName,Hour,Weekday\n"


def leeds_rows(quote_sites: bool = False) -> str:
    site = '"Briggate"' if quote_sites else "Briggate"
    other = '"Headrow"' if quote_sites else "Headrow"
    return (
        LEEDS_HEADER
        + f"01/01/2016,10,1,{site},0,Friday\n"  # row 2
        + f"01/01/2016,ten,1,{site},1,Friday\n"  # row 3: text in the count column
        + f"01/01/2016,-4,1,{site},2,Friday\n"  # row 4: negative count
        + f"31/02/2016,7,1,{site},3,Friday\n"  # row 5: no such date
        + "\n"  # row 6: blank, keeps its number
        + f"2016-01-01,12,1,{other},0,Friday\n"  # row 7: ISO date, another site
        + f"01-Jan-16,13,1,{other},1,Friday\n"  # row 8: dd-Mon-yy
        + f"01/01/2016,5,1,{site},25,Friday\n"  # row 9: no such hour
        + "01/01/2016,5\n"  # row 10: too few fields
        + f"01/01/2016,2.5,1,{other},2,Friday\n"  # row 11: not a whole number
        + f"01/01/2016,,1,{other},3,Friday\n"  # row 12: empty count
        + f"01/01/2016,9,1,{site},4,Friday\n"  # row 13
    )


@pytest.mark.parametrize("quoted", [False, True], ids=["numpy-splitter", "csv-module"])
def test_leeds_bad_values_are_reported_and_good_rows_kept(tmp_path: Path, quoted: bool) -> None:
    path = tmp_path / "leeds.csv"
    path.write_text(leeds_rows(quoted))
    counts = load_leeds_footfall(path)
    report = counts.report
    assert report.rows_read == 11
    found = {(bad.row, bad.column): bad for bad in report.bad_values}
    assert set(found) == {
        (3, "InCount"),
        (4, "InCount"),
        (5, "Date"),
        (9, "Hour"),
        (10, ""),
        (11, "InCount"),
        (12, "InCount"),
    }
    assert "not a number" in found[3, "InCount"].reason and found[3, "InCount"].raw == "ten"
    assert "negative" in found[4, "InCount"].reason
    assert "dd/mm/yyyy" in found[5, "Date"].reason and found[5, "Date"].raw == "31/02/2016"
    assert "0..23" in found[9, "Hour"].reason
    assert "2 fields" in found[10, ""].reason
    assert "whole number" in found[11, "InCount"].reason
    assert "empty" in found[12, "InCount"].reason
    assert found[3, "InCount"].site == "Briggate"
    assert counts.sites == ("Briggate", "Headrow")
    assert counts.hour_start_ns[0] == ns(2016, 1, 1)  # GMT in January
    briggate, headrow = counts.counts
    # Bad counts are NaN (never 0); rows that cannot be placed leave a gap.
    assert briggate[:5].tolist()[0] == 10 and briggate[4] == 9
    assert np.isnan(briggate[1:4]).all()
    assert headrow[:2].tolist() == [12.0, 13.0] and np.isnan(headrow[2:4]).all()
    gaps = {(g.site, g.first_missing_ns, g.n_hours) for g in report.gaps}
    assert ("Briggate", ns(2016, 1, 1, 3), 1) in gaps  # the unreadable date's hour
    assert ("Headrow", ns(2016, 1, 1, 4), 1) in gaps
    assert [issue.where for issue in report.issues()][:2] == ["row 3", "row 4"]


def test_gzip_and_plain_give_the_same_counts(tmp_path: Path) -> None:
    plain = tmp_path / "leeds.csv"
    plain.write_text(leeds_rows())
    packed = tmp_path / "leeds.csv.gz"
    packed.write_bytes(gzip.compress(leeds_rows().encode()))
    a, b = load_leeds_footfall(plain), load_leeds_footfall(packed)
    assert np.array_equal(a.counts, b.counts, equal_nan=True)
    assert a.report.bad_values == b.report.bad_values


def test_numpy_splitter_agrees_with_the_csv_module_on_real_rows(tmp_path: Path) -> None:
    with gzip.open(shared(LEEDS), "rt", newline="") as source:
        lines = [next(source) for _ in range(20_000)]
    fast = tmp_path / "fast.csv"
    fast.write_text("".join(lines).replace("\n", "\r\n"))
    # Quoting the site names makes the fast path unsafe, so this one goes through csv.
    slow = tmp_path / "slow.csv"
    slow.write_text(
        lines[0]
        + "".join(
            ",".join(f'"{cell}"' if i == 3 else cell for i, cell in enumerate(line.split(",")))
            for line in lines[1:]
        )
    )
    a, b = load_leeds_footfall(fast), load_leeds_footfall(slow)
    assert a.sites == b.sites and a.report.rows_read == b.report.rows_read == 19_999
    assert np.array_equal(a.hour_start_ns, b.hour_start_ns)
    assert np.array_equal(a.counts, b.counts, equal_nan=True)
    assert a.report.gaps == b.report.gaps


def test_melbourne_markers_are_gaps_other_junk_is_bad(tmp_path: Path) -> None:
    path = tmp_path / "melbourne.csv"
    path.write_text(
        "Date,Hour,North,South\n"
        "01/01/2019,0,5,-1\n"
        "01/01/2019,1,undefined,7\n"
        "01/01/2019,2,abc,-5\n"
        "01/01/2019,3,8,9\n"
    )
    counts = load_melbourne_pedestrian(path)
    assert counts.sites == ("North", "South")
    assert counts.counts[0, :2].tolist()[0] == 5 and np.isnan(counts.counts[0, 1])
    bad = {(b.row, b.column): b.reason for b in counts.report.bad_values}
    assert set(bad) == {(4, "North"), (4, "South")}
    assert "only -1, undefined mean missing" in bad[4, "South"]
    gaps = {(g.site, g.first_missing_ns) for g in counts.report.gaps}
    assert gaps == {("North", ns(2018, 12, 31, 14)), ("South", ns(2018, 12, 31, 13))}


def test_i94_duplicates_keep_identical_and_refuse_conflicting(tmp_path: Path) -> None:
    path = tmp_path / "i94.csv"
    header = "holiday,temp,rain_1h,snow_1h,clouds_all,weather_main,weather_description,date_time,traffic_volume\n"
    path.write_text(
        header
        + "None,280,0,0,1,Rain,light rain,2016-01-05 01:00:00,500\n"
        + "None,280,0,0,1,Mist,mist,2016-01-05 01:00:00,500\n"
        + "None,280,0,0,1,Rain,light rain,2016-01-05 02:00:00,400\n"
        + "None,280,0,0,1,Mist,mist,2016-01-05 02:00:00,410\n"
        + "None,280,0,0,1,Rain,light rain,2016-01-05 04:30:00,400\n"
        + "None,280,0,0,1,Rain,light rain,yesterday,400\n"
        + "None,280,0,0,1,Rain,light rain,2016-01-05 05:00:00,300\n"
    )
    counts = load_i94_traffic(path)
    assert counts.hour_start_ns[0] == ns(2016, 1, 5, 7)  # 01:00 CST
    assert counts.counts[0].tolist()[0] == 500.0
    assert np.isnan(counts.counts[0, 1])  # conflicting duplicate
    assert counts.counts[0, 4] == 300.0
    dups = {(d.rows, d.conflicting) for d in counts.report.duplicates}
    assert dups == {((2, 3), False), ((4, 5), True)}
    reasons = {b.row: b.reason for b in counts.report.bad_values}
    assert "not on the hour" in reasons[6] and "YYYY-MM-DD" in reasons[7]
    gaps = [(g.first_missing_ns, g.n_hours) for g in counts.report.gaps]
    assert gaps == [(ns(2016, 1, 5, 9), 2)]


def test_unreadable_files_raise_with_a_fix(tmp_path: Path) -> None:
    with pytest.raises(CountFileError, match="does not exist"):
        load_i94_traffic(tmp_path / "missing.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(CountFileError, match="empty"):
        load_i94_traffic(empty)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("Date,Hour,Count\n01/01/2016,0,5\n")
    with pytest.raises(CountFileError, match="right loader"):
        load_leeds_footfall(wrong)
    with pytest.raises(CountFileError, match="'date_time'"):
        load_i94_traffic(wrong)
    no_rows = tmp_path / "no_rows.csv"
    no_rows.write_text(LEEDS_HEADER + "31/02/2016,7,1,Briggate,3,Friday\n")
    with pytest.raises(CountFileError, match="no usable rows"):
        load_leeds_footfall(no_rows)
