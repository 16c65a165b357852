"""Station-file readers on the real files of tests/data/station_obs (see tests/data/README.md) and on
small corrupted copies. Values asserted were read by hand from the files."""

from __future__ import annotations

import gzip
import itertools
import math
import tempfile
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.formats import (
    RowError,
    UnreadableFileError,
    detect_format,
    read_observations,
    rh_from_dewpoint,
    wmo_from_id,
)
from ingest.formats.ghcn_daily import read_ghcn_csv, read_ghcn_dly
from ingest.formats.isd_lite import read_isd_lite
from ingest.formats.table import TableSpec, read_table
from tests.support import DLY, GHCN_CSV, ISD, ISD_COLLAPSED
from warning.shared.records import Observation


def split(rows: Iterable[Observation | RowError]) -> tuple[list[Observation], list[RowError]]:
    obs: list[Observation] = []
    errs: list[RowError] = []
    for r in rows:
        (errs if isinstance(r, RowError) else obs).append(r)  # type: ignore[arg-type]
    return obs, errs


def denver(raw_id: str) -> str | None:
    """Stand-in registry lookup: Denver Stapleton (WBAN 23062) is WMO 72565."""
    return "72565" if raw_id == "USW00023062" else wmo_from_id(raw_id)


@pytest.fixture(scope="module")
def isd() -> list[Observation]:
    obs, errs = split(read_isd_lite(ISD))
    assert errs == []
    return obs


@pytest.fixture(scope="module")
def dly() -> list[Observation]:
    obs, errs = split(read_ghcn_dly(DLY, station_resolver=denver))
    assert errs == []
    return obs


@pytest.fixture(scope="module")
def bj_csv() -> list[Observation]:
    obs, errs = split(read_ghcn_csv(GHCN_CSV))
    assert errs == []
    return obs


def by_time(obs: list[Observation]) -> dict[str, Observation]:
    return {o.time: o for o in obs}


# --------------------------------------------------------------------------------------------- ISD-Lite
def test_isd_lite_counts_times_and_station(isd: list[Observation]) -> None:
    assert len(isd) == 8733
    assert isd[0].time == "2017-01-01T00:00:00Z" and isd[-1].time == "2017-12-31T23:00:00Z"
    assert {o.station_id for o in isd} == {"54511"}  # USAF 545110 = WMO 54511 x 10
    assert all(a.time < b.time for a, b in itertools.pairwise(isd))
    assert {o.source for o in isd} == {"isd-lite"}


def test_isd_lite_first_rows_scaled_and_missing(isd: list[Observation]) -> None:
    # "2017 01 01 00   -49   -57 10269    70    10     8 -9999 -9999"
    o = isd[0]
    assert (o.air_temp_c, o.dewpoint_c, o.pressure_hpa, o.wind_ms) == (-4.9, -5.7, 1026.9, 1.0)
    assert o.precip_mm is None and o.precip_period_h is None and o.qc == {}
    es = lambda t: 6.1094 * math.exp(17.625 * t / (t + 243.04))  # noqa: E731 - Alduchov-Eskridge 1996
    assert o.rh_pct == pytest.approx(100 * es(-5.7) / es(-4.9), abs=0.05)
    # "2017 01 01 01   -60   -70 -9999 -9999    10     0 -9999 -9999": SLP missing -> None, not -999.9
    assert isd[1].pressure_hpa is None and isd[1].air_temp_c == -6.0


def test_isd_lite_extremes_and_hot_days(isd: list[Observation]) -> None:
    temps = [o for o in isd if o.air_temp_c is not None]
    hottest = max(temps, key=lambda o: o.air_temp_c or 0.0)
    coldest = min(temps, key=lambda o: o.air_temp_c or 0.0)
    assert (hottest.air_temp_c, hottest.time) == (39.0, "2017-06-15T07:00:00Z")
    assert (coldest.air_temp_c, coldest.time) == (-13.0, "2017-01-23T19:00:00Z")
    daily_max: dict[str, float] = defaultdict(lambda: -99.0)
    for o in temps:
        daily_max[o.time[:10]] = max(daily_max[o.time[:10]], o.air_temp_c or -99.0)
    assert sum(v >= 35.0 for v in daily_max.values()) == 25


def test_isd_lite_precipitation_6h_and_trace(isd: list[Observation]) -> None:
    p6 = [o for o in isd if o.precip_period_h == 6.0]
    assert len(p6) == 130
    assert sum(o.precip_mm or 0.0 for o in p6) == pytest.approx(579.1)
    trace = [o for o in p6 if o.qc.get("precip_mm") == "trace"]
    assert len(trace) == 17 and all(o.precip_mm == 0.0 for o in trace)  # -1 is trace, not -0.1 mm
    t = by_time(isd)
    assert t["2017-01-01T06:00:00Z"].qc == {"precip_mm": "trace"}
    assert t["2017-01-07T12:00:00Z"].precip_mm == 0.2  # "... -9999     2"
    assert all((o.precip_mm or 0.0) >= 0 for o in isd)


def test_isd_lite_collapsed_copy_and_gzip_give_same_records(isd: list[Observation], tmp_path: Path) -> None:
    collapsed = [r for r in read_observations(ISD_COLLAPSED, station_resolver=lambda _: "54511")]
    assert collapsed == isd
    gz = tmp_path / "545110-99999-2017.gz"
    with gzip.open(gz, "wb") as fh:
        fh.write(ISD.read_bytes())
    assert detect_format(gz) == "isd-lite"
    assert list(read_observations(gz)) == isd


def test_isd_lite_station_resolution(tmp_path: Path) -> None:
    drill = list(read_isd_lite(ISD, as_station="52889"))
    assert len(drill) == 8733 and {getattr(o, "station_id", None) for o in drill} == {"52889"}
    renamed = tmp_path / "beijing.txt"
    renamed.write_bytes(b"".join(ISD.read_bytes().splitlines(keepends=True)[:3]))
    obs, errs = split(read_isd_lite(renamed))
    assert obs == [] and len(errs) == 3 and "no station id" in errs[0].reason
    obs, errs = split(read_isd_lite(renamed, station_resolver=lambda raw: None, as_station="54511"))
    assert len(obs) == 3 and errs == []
    obs, errs = split(read_isd_lite(ISD, station_resolver=lambda raw: None))
    assert obs == [] and len(errs) == 8733 and "unknown station '545110-99999'" in errs[0].reason


# --------------------------------------------------------------------------------------------- GHCN .dly
def test_ghcn_dly_records_and_counts(dly: list[Observation]) -> None:
    assert len(dly) == 25966  # station-days with a TMAX/TMIN/PRCP/AWND/WSFG value
    assert {o.station_id for o in dly} == {"72565"}
    assert all(a.time < b.time for a, b in itertools.pairwise(dly))  # one merged record per day
    t = by_time(dly)
    assert t["1994-06-26T00:00:00Z"].tmax_c == 40.0 == max(o.tmax_c for o in dly if o.tmax_c is not None)
    assert t["1951-02-01T00:00:00Z"].tmin_c == -31.7 == min(o.tmin_c for o in dly if o.tmin_c is not None)
    # USW00023062199409TMAX: day 1 = 244, day 2 = 317 (tenths of degC)
    assert t["1994-09-01T00:00:00Z"].tmax_c == 24.4 and t["1994-09-02T00:00:00Z"].tmax_c == 31.7
    o = t["1994-06-26T00:00:00Z"]
    assert (o.precip_mm, o.precip_period_h, o.wind_ms, o.gust_ms) == (0.0, 24.0, 2.5, 11.3)


def test_ghcn_dly_annual_precipitation(dly: list[Observation]) -> None:
    annual: dict[str, float] = defaultdict(float)
    for o in dly:
        annual[o.time[:4]] += o.precip_mm or 0.0
    assert annual["1955"] == pytest.approx(408.1)
    assert annual["1965"] == pytest.approx(555.8)
    assert annual["1985"] == pytest.approx(414.9)
    assert not any(o.time[5:10] in ("02-30", "02-31", "04-31") for o in dly)
    assert all(v is None or v > -100 for o in dly for v in (o.tmax_c, o.tmin_c, o.precip_mm))


def test_ghcn_dly_flags(dly: list[Observation]) -> None:
    notes = [(o, k, v) for o in dly for k, v in o.qc.items()]
    assert sum("qflag" in v for _, _, v in notes) == 29  # QFLAG-set values of the mapped elements
    o = by_time(dly)["1995-09-07T00:00:00Z"]
    assert o.tmax_c is None and o.tmin_c == 8.9
    assert o.qc["tmax_c"] == "ghcn qflag I (failed internal consistency check): 12.8 dropped"
    trace = [o for o, k, v in notes if k == "precip_mm" and v == "trace"]
    assert len(trace) == 3694 and all(o.precip_mm == 0.0 for o in trace)
    assert by_time(dly)["1951-02-01T00:00:00Z"].qc == {"precip_mm": "trace"}


def test_ghcn_dly_unresolved_station_is_row_error() -> None:
    rows = read_ghcn_dly(DLY)  # default rule: USW (WBAN network) ids carry no WMO index
    first = next(rows)
    assert isinstance(first, RowError) and "unknown station 'USW00023062'" in first.reason
    rows.close()  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------- GHCN CSV
def test_ghcn_csv_beijing_records(bj_csv: list[Observation]) -> None:
    assert {o.station_id for o in bj_csv} == {"54511"}  # CHM00054511 -> WMO 54511
    assert len(bj_csv) == 26157  # upstream's 27,756 rows less 1,599 with only TAVG/SNWD (no Observation element)
    assert bj_csv[0].time == "1951-01-01T00:00:00Z" and bj_csv[-1].time == "2025-08-24T00:00:00Z"
    t = by_time(bj_csv)
    wettest = sorted(bj_csv, key=lambda o: o.precip_mm or 0.0, reverse=True)[:3]
    assert [(o.time[:10], o.precip_mm) for o in wettest] == [
        ("2016-07-20", 262.6), ("1959-07-31", 244.2), ("1963-08-09", 212.2)]
    assert t["2023-07-30T00:00:00Z"].precip_mm == 113.3
    # "2012-07-21",...,"  777",",,s",,,"  309",",,s","  238",...: the quoted comma in NAME shifts nothing
    o = t["2012-07-21T00:00:00Z"]
    assert (o.precip_mm, o.tmax_c, o.tmin_c, o.precip_period_h) == (77.7, 30.9, 23.8, 24.0)
    assert t["2016-07-20T00:00:00Z"].tmax_c is None and t["2016-07-20T00:00:00Z"].tmin_c == 21.3
    first = bj_csv[0]  # "    0","T,,s" and "  -38" / " -140"
    assert (first.precip_mm, first.tmax_c, first.tmin_c) == (0.0, -3.8, -14.0)
    assert first.qc == {"precip_mm": "trace"}
    for year, total, days in (("2012", 733.2, 366), ("2023", 625.2, 356)):
        p = [o.precip_mm for o in bj_csv if o.time.startswith(year) and o.precip_mm is not None]
        assert (round(sum(p), 1), len(p)) == (total, days)


# --------------------------------------------------------------------------------------------- detection
def test_detect_format_real_files() -> None:
    assert detect_format(ISD) == detect_format(ISD_COLLAPSED) == "isd-lite"
    assert detect_format(DLY) == "ghcn-dly"
    assert detect_format(GHCN_CSV) == "ghcn-csv"


def test_detect_format_synthetic(tmp_path: Path) -> None:
    cases = {"a.json": b"[{}]", "b.jsonl": b'{"a": 1}\n', "c.csv": b"station_id,time\n", "d.nc": b"CDF\x01"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    assert [detect_format(tmp_path / n) for n in cases] == ["table", "table", "table", "grid"]
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(UnreadableFileError):
        detect_format(tmp_path / "empty")
    with pytest.raises(ValueError, match="unknown format"):
        read_observations(tmp_path / "c.csv", "xml")


def test_unreadable_files_raise(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFileError, match="No such file"):
        read_isd_lite(tmp_path / "545110-99999-2017")
    bad = tmp_path / "545110-99999-2017.gz"
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(UnreadableFileError, match="gzip"):
        read_observations(bad, "isd-lite")
    (tmp_path / "x.csv").write_bytes(b"A,B\n1,2\n")
    with pytest.raises(UnreadableFileError, match="STATION and DATE"):
        read_ghcn_csv(tmp_path / "x.csv")
    with pytest.raises(UnreadableFileError, match="no column for station_id, time"):
        list(read_table(tmp_path / "x.csv"))


# --------------------------------------------------------------------------------------------- bad input
ISD_OK = b"2017 01 01 00   -49   -57 10269    70    10     8 -9999 -9999"


def test_isd_lite_corrupted_lines_are_row_errors(tmp_path: Path) -> None:
    lines = [
        ISD_OK,
        b"2017 01 01 01   -60   -70 -9999 -9999    10     0 -9999",  # truncated
        b"2017 01 01 02   -5x   -60 -9999 -9999    10     0 -9999 -9999",  # not an integer
        b"2017 02 30 03   -50   -60 -9999 -9999    10     0 -9999 -9999",  # impossible date
        b"2017 01 01 00   -49   -57 10269    70    10     8 -9999 -9999",  # duplicate
        b"2017 01 01 04 \xff -60 -9999 -9999 10 0 -9999 -9999",  # not ASCII
        b"x" * (1 << 21),  # 2 MiB line
        b"2017 01 01 05   -50   -60 -9999 -9999    10     0    -1    -1",  # trace 1 h and 6 h
    ]
    path = tmp_path / "545110-99999-2017"
    path.write_bytes(b"\n".join(lines) + b"\n")
    rows = list(read_isd_lite(path))
    assert [type(r).__name__ for r in rows] == ["Observation"] + ["RowError"] * 6 + ["Observation"]
    errs = [r for r in rows if isinstance(r, RowError)]
    assert [e.line_no for e in errs] == [2, 3, 4, 5, 6, 7]
    reasons = [e.reason for e in errs]
    assert "found 11" in reasons[0] and "non-integer" in reasons[1] and "impossible date" in reasons[2]
    assert "duplicate" in reasons[3] and "ascii" in reasons[4] and "too long" in reasons[5]
    assert errs[0].raw == lines[1] and len(errs[5].raw) <= 4096
    last = rows[-1]
    assert isinstance(last, Observation) and last.time == "2017-01-01T05:00:00Z"
    assert (last.precip_mm, last.precip_period_h) == (0.0, 1.0)
    assert last.qc == {"precip_mm": "trace", "precip_6h_mm": "trace"}


def _dly_line(element: str, values: dict[int, tuple[int, str, str]], ym: str = "202402") -> bytes:
    slots = []
    for d in range(1, 32):
        v, m, q = values.get(d, (-9999, " ", " "))
        slots.append(f"{v:5d}{m}{q} ")
    return f"CHM00054511{ym}{element}{''.join(slots)}".encode()


def test_ghcn_dly_synthetic_flags_and_corruption(tmp_path: Path) -> None:
    lines = [
        _dly_line("TMAX", {1: (123, " ", " "), 2: (150, " ", "X"), 30: (99, " ", " ")}),  # Feb 30 has a value
        _dly_line("TMIN", {1: (-45, " ", " "), 2: (-20, " ", " ")}),
        _dly_line("PRCP", {1: (0, "T", " "), 2: (25, " ", " "), 3: (0, "P", " ")}),
        _dly_line("SNOW", {1: (5, " ", " ")}),  # no Observation field: skipped silently
        _dly_line("TMAX", {1: (1, " ", " ")})[:100],  # truncated
        _dly_line("TMAX", {1: (1, " ", " ")}, ym="202403").replace(b"    1", b"  1x1", 1),
        b"\xffCHM00054511",
    ]
    path = tmp_path / "CHM00054511.dly"
    path.write_bytes(b"\n".join(lines) + b"\n")
    obs, errs = split(read_observations(path))
    assert [o.time for o in obs] == ["2024-02-01T00:00:00Z", "2024-02-02T00:00:00Z", "2024-02-03T00:00:00Z"]
    d1, d2, d3 = obs
    assert (d1.tmax_c, d1.tmin_c, d1.precip_mm, d1.qc) == (12.3, -4.5, 0.0, {"precip_mm": "trace"})
    assert d2.tmax_c is None and d2.qc == {"tmax_c": "ghcn qflag X (failed bounds check): 15 dropped"}
    assert (d2.tmin_c, d2.precip_mm, d2.precip_period_h) == (-2.0, 2.5, 24.0)
    assert d3.precip_mm == 0.0 and "presumed zero" in d3.qc["precip_mm"]
    assert [e.line_no for e in errs] == [1, 5, 6, 7]
    assert "impossible date 2024-02-30" in errs[0].reason and "wrong width" in errs[1].reason
    assert "day 1: not an integer" in errs[2].reason and "ascii" in errs[3].reason


def test_ghcn_csv_synthetic_corruption(tmp_path: Path) -> None:
    head = b'"STATION","DATE","NAME","PRCP","PRCP_ATTRIBUTES","TMAX","TMAX_ATTRIBUTES"'
    rows = [
        head,
        b'"CHM00054511","2024-07-01","BEIJING, CH","  125",",,S","  301",",,S"',
        b'"CHM00054511","2024-07-02","BEIJING, CH","  125",",,S"',  # short row
        b'"CHM00054511","2024-02-30","BEIJING, CH","  125",",,S","  301",",,S"',  # impossible date
        b'"CHM00054511","2024-07-03","BEIJING, CH","12x",",,S","  301",",,S"',  # bad value
        b'"USW00023062","2024-07-04","DENVER","  1",",,S","  301",",,S"',  # unknown station
        b'"CHM00054511","2024-07-05","BEIJING, CH","-9999",",,S","  301",",G,S"',  # missing + qflag
    ]
    path = tmp_path / "x.csv"
    path.write_bytes(b"\r\n".join(rows) + b"\r\n")
    assert detect_format(path) == "ghcn-csv"
    obs, errs = split(read_observations(path))
    assert [(o.time, o.precip_mm, o.tmax_c) for o in obs] == [
        ("2024-07-01T00:00:00Z", 12.5, 30.1), ("2024-07-05T00:00:00Z", None, None)]
    assert obs[1].qc == {"tmax_c": "ghcn qflag G (failed gap check): 30.1 dropped"}
    assert [e.line_no for e in errs] == [3, 4, 5, 6]
    assert "unknown station 'USW00023062'" in errs[3].reason


# --------------------------------------------------------------------------------------------- table
def test_table_csv_mapping_units_and_time_zone(tmp_path: Path) -> None:
    path = tmp_path / "bureau.csv"
    path.write_text(
        "# exported by a county bureau\n"
        "Station,Local time,Temp_F,Wind_kmh,Rain_in\n"
        "52889,2026-07-14 14:00,95,36,0.5\n"
        "52889,2026-07-14 15:00,inf,36,\n"
        "52889,2026-07-14 16:00,NaN,abc,\n"
        "52889,2026-02-30 16:00,1,1,\n"
        "99999999,2026-07-14 17:00,1,1,\n"
        "52889,2026-07-14 18:00,NA,,1,extra\n"
    )
    spec = TableSpec(
        columns={"Station": "station_id", "Local time": "time", "Temp_F": "air_temp_c", "Wind_kmh": "wind_ms",
                 "Rain_in": "precip_mm"},
        units={"air_temp_c": "degF", "wind_ms": "km/h", "precip_mm": "in"},
        time_zone="Asia/Shanghai",
    )
    obs, errs = split(read_observations(path, table=spec))
    assert len(obs) == 1
    o = obs[0]
    assert (o.station_id, o.time, o.air_temp_c, o.wind_ms, o.precip_mm) == (
        "52889", "2026-07-14T06:00:00Z", 35.0, 10.0, 12.7)
    assert [e.line_no for e in errs] == [4, 5, 6, 7, 8]
    assert "non-finite" in errs[0].reason and "wind_ms: not a number" in errs[1].reason
    assert "time" in errs[2].reason and "unknown station" in errs[3].reason and "found 6" in errs[4].reason
    with pytest.raises(ValueError, match="unit 'furlong'"):
        TableSpec(units={"wind_ms": "furlong"})


def test_table_json_lines_and_array(tmp_path: Path) -> None:
    jl = tmp_path / "push.jsonl"
    jl.write_bytes(
        b'{"station_id": "52889", "time": "2026-07-14T06:00:00Z", "precip_mm": 12.5, "precip_period_h": 1,'
        b' "qc": {"precip_mm": "suspect"}}\n'
        b"{bad json\n"
        b'{"station_id": "CHM00052889", "time": 1784000000, "air_temp_c": NaN, "rh_pct": Infinity}\n'
        b'{"station_id": "52889", "time": "2026-07-14", "tmax_c": 36.1}\n'
    )
    obs, errs = split(read_observations(jl))
    assert [(o.time, o.precip_mm, o.tmax_c) for o in obs] == [
        ("2026-07-14T06:00:00Z", 12.5, None), ("2026-07-14T00:00:00Z", None, 36.1)]
    assert obs[0].qc == {"precip_mm": "suspect"} and obs[0].precip_period_h == 1.0
    assert [e.line_no for e in errs] == [2, 3] and "rh_pct: non-finite" in errs[1].reason

    arr = tmp_path / "push.json"
    arr.write_text(
        '[\n {"station_id": "52889", "time": "2026-07-14T14:00:00+08:00", "air_temp_c": 30},\n'
        ' {"station_id": "52889", "time": "yesterday"},\n 5,\n'
        ' {"station_id": "52889", "time": "2026-07-14T07:00:00Z", "gust_ms": "17.2"}\n'
    )
    obs, errs = split(read_table(arr, TableSpec(kind="json"), as_station="53000"))
    assert [(o.station_id, o.time) for o in obs] == [
        ("53000", "2026-07-14T06:00:00Z"), ("53000", "2026-07-14T07:00:00Z")]
    assert obs[1].gust_ms == 17.2
    assert [e.line_no for e in errs] == [3, 4, 6]
    assert "time" in errs[0].reason and "JSON object" in errs[1].reason and "truncated" in errs[2].reason


# --------------------------------------------------------------------------------------------- helpers
def test_station_rules_and_humidity() -> None:
    assert wmo_from_id("CHM00054511") == "54511"
    assert wmo_from_id("545110-99999") == wmo_from_id("545110") == wmo_from_id(" 54511 ") == "54511"
    assert wmo_from_id("USW00023062") is None and wmo_from_id("999999-23062") is None
    assert wmo_from_id("545119-99999") is None
    assert rh_from_dewpoint(20.0, 20.0) == 100.0
    assert rh_from_dewpoint(30.0, 20.0) == pytest.approx(55.1, abs=0.1)


# --------------------------------------------------------------------------------------------- fuzz
_SEEDS = [
    ISD_OK,
    _dly_line("TMAX", {1: (123, " ", " ")}),
    b'"CHM00054511","2024-07-01","BEIJING, CH","  125",",,S","  301",",,S"',
    b'{"station_id": "52889", "time": "2026-07-14T06:00:00Z", "air_temp_c": 30}',
    b"station_id,time,air_temp_c",
]
_line = st.one_of(
    st.binary(max_size=300),
    st.sampled_from(_SEEDS).flatmap(
        lambda seed: st.tuples(st.integers(0, len(seed)), st.binary(max_size=4)).map(
            lambda cut: seed[: cut[0]] + cut[1] + seed[cut[0] + 1 :]
        )
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_line, max_size=12), st.sampled_from(["isd-lite", "ghcn-dly", "ghcn-csv", "table"]))
def test_fuzz_readers_never_raise_on_rows(lines: list[bytes], fmt: str) -> None:
    """Whatever the rows hold, a reader yields Observations and RowErrors; only a file without a usable
    header/opening may raise UnreadableFileError."""
    header = {"ghcn-csv": [_SEEDS[2].replace(b"CHM00054511", b"STATION", 1)], "table": [_SEEDS[4]]}
    body = b"\n".join([*header.get(fmt, []), *lines])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "545110-99999-2017"
        path.write_bytes(body)
        try:
            rows = list(read_observations(path, fmt))
        except UnreadableFileError:
            return
    for r in rows:
        assert isinstance(r, Observation | RowError)
        if isinstance(r, Observation):
            assert len(r.time) == 20 and r.time.endswith("Z")
            for v in (r.air_temp_c, r.tmax_c, r.tmin_c, r.precip_mm, r.wind_ms, r.pressure_hpa):
                assert v is None or math.isfinite(v)
