"""Station registry and GB/T 2260 region tree (warning/shared/regions.py and its two package CSV files)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from warning.shared import regions
from warning.shared.regions import PROVINCE_CODE, Region, RegionTree, Station, StationRegistry

PREFECTURES = {
    "620100": "兰州市", "620200": "嘉峪关市", "620300": "金昌市", "620400": "白银市", "620500": "天水市",
    "620600": "武威市", "620700": "张掖市", "620800": "平凉市", "620900": "酒泉市", "621000": "庆阳市",
    "621100": "定西市", "621200": "陇南市", "622900": "临夏回族自治州", "623000": "甘南藏族自治州",
}


@pytest.fixture(scope="module")
def registry() -> StationRegistry:
    return StationRegistry.load()


@pytest.fixture(scope="module")
def tree() -> RegionTree:
    return RegionTree.load()


# ------------------------------------------------------------------------------------------- region tree


def test_tree_has_province_14_prefectures_and_all_counties(tree: RegionTree) -> None:
    province = tree.region(PROVINCE_CODE)
    assert province is not None and province.level == "province" and province.parent_code is None
    prefectures = {r.code: r.name_zh for r in tree.regions("prefecture")}
    assert prefectures == PREFECTURES
    assert all(r.parent_code == PROVINCE_CODE for r in tree.regions("prefecture"))
    counties = tree.regions("county")
    # 86 county-level divisions of GB/T 2260, plus 620201 standing in for 嘉峪关 (no counties of its own).
    assert len(counties) == 87
    assert len([c for c in counties if c.code != "620201"]) == 86
    for c in counties:
        assert re.fullmatch(r"62\d{4}", c.code)
        assert c.parent_code == c.code[:4] + "00"
        assert c.parent_code in PREFECTURES


@pytest.mark.parametrize(("code", "name_zh", "parent"), [
    ("620982", "敦煌市", "620900"),
    ("620881", "华亭市", "620800"),  # 华亭县 620824 became 华亭市 620881 (2018)
    ("620423", "景泰县", "620400"),
    ("621026", "宁县", "621000"),
    ("622927", "积石山保安族东乡族撒拉族自治县", "622900"),
    ("623001", "合作市", "623000"),
    ("620201", "嘉峪关市", "620200"),
])
def test_known_counties(tree: RegionTree, code: str, name_zh: str, parent: str) -> None:
    region = tree.region(code)
    assert region is not None
    assert (region.name_zh, region.level, region.parent_code) == (name_zh, "county", parent)
    parent_region = tree.parent(code)
    assert parent_region is not None and parent_region.code == parent
    assert tree.prefecture_of(code) == parent_region


def test_retired_and_foreign_codes_are_unknown(tree: RegionTree) -> None:
    for code in ("620824", "620171", "610102", "", "62", "abc", "999999"):
        assert not tree.is_known(code)
        assert tree.region(code) is None and tree.parent(code) is None
        assert tree.counties_of(code) == ()


def test_covers_semantics(tree: RegionTree) -> None:
    every_county = tree.counties_of(PROVINCE_CODE)
    assert len(every_county) == 87
    # The province covers every county and every prefecture.
    assert all(tree.covers(PROVINCE_CODE, c) for c in every_county)
    assert all(tree.covers(PROVINCE_CODE, p) for p in PREFECTURES)
    # A prefecture covers exactly its own counties.
    for prefecture in PREFECTURES:
        own = set(tree.counties_of(prefecture))
        assert own, prefecture
        assert {c for c in every_county if tree.covers(prefecture, c)} == own
    assert tree.covers("620900", "620982")
    assert not tree.covers("620100", "620982")
    assert tree.covers("620200", "620201")
    # A county covers itself only, never its neighbours or its prefecture.
    assert tree.covers("620982", "620982")
    assert not tree.covers("620982", "620981")
    assert not tree.covers("620982", "620900")
    assert not tree.covers("620982", PROVINCE_CODE)
    # Unknown codes cover nothing and are covered by nothing; ints are accepted as codes.
    assert not tree.covers("999999", "620982")
    assert not tree.covers(PROVINCE_CODE, "610102")
    assert tree.covers(620000, 620982)


def test_counties_of(tree: RegionTree) -> None:
    assert tree.counties_of("620982") == ("620982",)
    assert tree.counties_of("620200") == ("620201",)
    assert tree.counties_of("620300") == ("620302", "620321")
    assert len(tree.counties_of("621200")) == 9


def test_module_level_helpers() -> None:
    assert regions.covers("620000", "620982") and not regions.covers("620100", "620982")
    assert regions.is_known("623000") and not regions.is_known("630000")


def test_tree_rejects_inconsistent_data() -> None:
    with pytest.raises(ValueError, match="unknown parent"):
        RegionTree([Region("620982", "Dunhuang", "敦煌市", "county", "620900")])
    with pytest.raises(ValueError, match="duplicate"):
        RegionTree([Region("620000", "Gansu", "甘肃省", "province", None)] * 2)
    with pytest.raises(ValueError, match="columns"):
        RegionTree.from_csv("code,name\n620000,Gansu\n")


# -------------------------------------------------------------------------------------------- stations


def test_every_prefecture_has_a_station(registry: StationRegistry) -> None:
    by_prefecture = {p: [s.station_id for s in registry if s.prefecture_code == p] for p in PREFECTURES}
    assert all(by_prefecture.values()), {p: ids for p, ids in by_prefecture.items() if not ids}
    assert {s.prefecture_code for s in registry} == set(PREFECTURES)


def test_dunhuang(registry: StationRegistry) -> None:
    s = registry.get("52418")
    assert s is not None
    assert (s.name, s.name_zh, s.county_code, s.prefecture_code) == ("Dunhuang", "敦煌", "620982", "620900")
    assert s.county_name == "Dunhuang City" and s.prefecture_name == "Jiuquan"
    assert s.latitude == pytest.approx(40.15, abs=0.02)
    assert s.longitude == pytest.approx(94.68, abs=0.02)
    assert s.elevation_m == pytest.approx(1139, abs=5)
    assert registry.get(52418) == s and 52418 in registry and "52418" in registry


@pytest.mark.parametrize(("station_id", "county", "prefecture"), [
    ("52889", "620102", "620100"),  # Lanzhou
    ("52533", "620902", "620900"),  # Jiuquan
    ("52652", "620702", "620700"),  # Zhangye
    ("52679", "620602", "620600"),  # Wuwei
    ("52674", "620321", "620300"),  # Yongchang
    ("52532", "620201", "620200"),  # Jiayuguan
    ("52896", "620402", "620400"),  # Baiyin
    ("57006", "620502", "620500"),  # Tianshui
    ("53915", "620802", "620800"),  # Kongtong (Pingliang)
    ("53923", "621002", "621000"),  # Xifeng (Qingyang)
    ("52995", "621102", "621100"),  # Anding (Dingxi)
    ("56096", "621202", "621200"),  # Wudu (Longnan)
    ("52984", "622901", "622900"),  # Linxia
    ("56080", "623001", "623000"),  # Hezuo (Gannan)
])
def test_prefecture_seat_stations(registry: StationRegistry, station_id: str, county: str,
                                  prefecture: str) -> None:
    s = registry.get(station_id)
    assert s is not None
    assert (s.county_code, s.prefecture_code) == (county, prefecture)


def test_station_counties_are_known_counties_of_their_prefecture(registry: StationRegistry,
                                                                 tree: RegionTree) -> None:
    assert regions.consistency_problems(registry, tree) == []
    for s in registry:
        county = tree.region(s.county_code)
        assert county is not None and county.level == "county"
        assert county.parent_code == s.prefecture_code
        assert county.name == s.county_name
        prefecture = tree.region(s.prefecture_code)
        assert prefecture is not None and prefecture.name == s.prefecture_name


def test_coordinates_in_gansu_bounding_box(registry: StationRegistry) -> None:
    for s in registry:
        assert 32.5 <= s.latitude <= 42.9, s
        assert 92.2 <= s.longitude <= 108.8, s
        assert 500 <= s.elevation_m <= 4000, s


def test_station_ids_unique_five_digit(registry: StationRegistry) -> None:
    ids = [s.station_id for s in registry]
    assert len(ids) == len(set(ids)) == len(registry) >= 14
    assert all(re.fullmatch(r"5\d{4}", i) for i in ids)
    assert ids == sorted(ids)
    assert registry.stations() == list(registry)


def test_unknown_station(registry: StationRegistry) -> None:
    assert registry.get("99999") is None and "99999" not in registry
    assert registry.get("") is None and None not in registry


def test_to_dict_has_the_api_keys(registry: StationRegistry) -> None:
    d = registry.get("52418").to_dict()  # type: ignore[union-attr]
    assert set(d) == {"station_id", "name", "name_zh", "latitude", "longitude", "elevation_m",
                      "county_code", "county_name", "prefecture_code", "prefecture_name"}
    assert d["station_id"] == "52418" and isinstance(d["latitude"], float)


def test_in_region(registry: StationRegistry, tree: RegionTree) -> None:
    jiuquan = registry.in_region("620900", tree)
    assert "52418" in {s.station_id for s in jiuquan}
    assert all(s.prefecture_code == "620900" for s in jiuquan)
    assert len(registry.in_region(PROVINCE_CODE, tree)) == len(registry)
    assert [s.station_id for s in registry.in_region("620982", tree)] == ["52417", "52418"]


def test_load_is_cached() -> None:
    assert StationRegistry.load() is StationRegistry.load()
    assert RegionTree.load() is RegionTree.load()


def test_registry_rejects_duplicates() -> None:
    s = Station("52418", "Dunhuang", "敦煌", 40.15, 94.68, 1139.0, "620982", "Dunhuang City", "620900",
                "Jiuquan")
    with pytest.raises(ValueError, match="duplicate"):
        StationRegistry([s, s])


def test_a_bureau_station_file_replaces_the_packaged_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from warning.shared import regions as r

    src = r._read_data(r.STATIONS_FILE).splitlines()
    own = tmp_path / "stations.csv"
    own.write_text("\n".join([src[0], *[line for line in src[1:] if line.startswith("52418,")]]) + "\n")
    monkeypatch.setenv("EWS_STATIONS_FILE", str(own))
    reg = r._default_registry.__wrapped__()  # type: ignore[attr-defined]
    assert [s.station_id for s in reg] == ["52418"]
