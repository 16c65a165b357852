from tests.support import CAP_XSD
from tests.unit.test_rules_grading import HEAT, NOW, sig
from warning.cap import render_cap, validate_cap
from warning.grading import apply_signal
from warning.shapes import county_at, region_polygon
from warning.shared.regions import RegionTree, StationRegistry


def test_every_county_and_prefecture_has_a_closed_polygon() -> None:
    for region in RegionTree.load().regions():
        if region.level == "province":
            continue
        poly = region_polygon(region.code)
        assert poly is not None and len(poly) >= 4 and poly[0] == poly[-1], region.code
        assert all(32 < lat < 43.5 and 92 < lon < 109.5 for lat, lon in poly)


def test_cap_with_the_county_polygon_validates() -> None:
    _, ev = apply_signal(None, sig("red"), HEAT, NOW)
    assert ev is not None
    xml = render_cap(ev, polygon=region_polygon("620982"))
    assert b"<polygon>" in xml and validate_cap(xml, CAP_XSD) == []


def test_county_at_finds_every_stations_own_county() -> None:
    """The ``point=`` filter of the warnings list: each registry station lies in the outline of its county."""
    stations = list(StationRegistry.load())
    assert [county_at(s.latitude, s.longitude) for s in stations] == [s.county_code for s in stations]
    assert county_at(0.0, 0.0) is None and county_at(39.9, 116.4) is None  # the equator, Beijing
