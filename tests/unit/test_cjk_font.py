"""The dashboard's bundled CJK font (issue 20): a Noto Sans SC subset that holds every Chinese character the
service ships (rules, region and station names, the page), small enough to load on every visit, declared in
app.css with the builder's unicode-range, served as font/woff2 under a CSP that allows it."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import orjson
import pytest

from warning.web import dashboard
from warning.web.tools import build_font

pytest.importorskip("brotli", reason="brotli (dev extra) reads woff2: pip install -e '.[dev]'")
from fontTools.ttLib import TTFont  # after the skip: woff2 needs brotli

STATIC = dashboard.STATIC_DIR
DATA = Path(build_font.WARNING) / "data"
FONT = STATIC / build_font.FONT_NAME


@pytest.fixture(scope="module")
def cmap() -> set[str]:
    return {chr(c) for c in TTFont(FONT).getBestCmap()}


def cjk(text: str) -> set[str]:
    return set(build_font.CJK.findall(text))


def missing(chars: set[str], cmap: set[str]) -> str:
    return "".join(sorted(chars - cmap))


REBUILD = "not in the font: re-run warning/web/tools/build_font.py (its docstring)"


def test_rules_toml_is_covered(cmap: set[str]) -> None:
    chars = cjk((DATA / "rules.toml").read_text(encoding="utf-8"))
    assert len(chars) > 300  # the basis and guidance texts are Chinese
    assert not missing(chars, cmap), f"{missing(chars, cmap)} {REBUILD}"


def test_region_and_station_names_are_covered(cmap: set[str]) -> None:
    chars: set[str] = set()
    for name in ("gansu_counties.geojson", "gansu_prefectures.geojson"):
        for f in orjson.loads((STATIC / name).read_bytes())["features"]:
            chars |= cjk(" ".join(str(v) for v in f["properties"].values()))
    for name in ("regions.csv", "stations.csv"):
        with (DATA / name).open(encoding="utf-8") as fh:
            for row in csv.reader(fh):
                chars |= cjk(" ".join(row))
    assert {"敦", "煌", "岷", "洮"} <= chars  # names outside GB 2312 level 1 too
    assert not missing(chars, cmap), f"{missing(chars, cmap)} {REBUILD}"


def test_the_page_itself_is_covered(cmap: set[str]) -> None:
    chars: set[str] = set()
    for path in STATIC.iterdir():
        if path.suffix in (".html", ".js"):
            chars |= cjk(path.read_text(encoding="utf-8"))
    assert not missing(chars, cmap), f"{missing(chars, cmap)} {REBUILD}"


def test_common_characters_and_size(cmap: set[str]) -> None:
    assert build_font.gb2312_level1() <= cmap and len(build_font.gb2312_level1()) == 3755
    assert FONT.stat().st_size < 1_000_000  # loaded on every first visit: well under 1.5 MB
    assert TTFont(FONT)["name"].getDebugName(1) == "Noto Sans SC"


def test_css_declares_the_font_with_the_builders_range() -> None:
    css = (STATIC / "app.css").read_text(encoding="utf-8")
    face = re.search(r"@font-face\s*\{[^}]*\}", css)
    assert face is not None
    assert f'url("{build_font.FONT_NAME}") format("woff2")' in face[0]
    assert f"unicode-range: {build_font.UNICODE_RANGE};" in face[0]
    assert re.search(r'font-family: "Noto Sans SC", system-ui', css)  # first: see the comment in app.css


def test_served_as_a_font_under_the_csp() -> None:
    assert dashboard.CONTENT_TYPES[".woff2"] == "font/woff2"
    assert dashboard._static_file(build_font.FONT_NAME) == FONT
    assert "font-src 'self'" in dashboard._PAGE_HEADERS["Content-Security-Policy"]
    assert (STATIC / build_font.LICENSE_NAME).read_text(encoding="utf-8").count("SIL OPEN FONT LICENSE") >= 1
    assert build_font.FONT_NAME in (STATIC / "SOURCES.md").read_text(encoding="utf-8")
