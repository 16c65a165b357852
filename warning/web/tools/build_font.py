"""One-off builder of the dashboard's CJK web font (never run at service start).

A fresh Debian + Chromium has no CJK font: every Chinese string of the dashboard (warning headlines, region and
station names, the page's zh chrome) would render as boxes. The page therefore ships its own font, a subset of
Noto Sans SC Regular (SIL OFL 1.1), from the npm package ``@expo-google-fonts/noto-sans-sc`` (the Google Fonts
TTFs, one per weight, unsliced), fetched by hand with the npm client and unpacked in a scratch directory::

    mkdir -p /tmp/font && cd /tmp/font && npm pack @expo-google-fonts/noto-sans-sc@0.4.3
    tar xzf expo-google-fonts-noto-sans-sc-0.4.3.tgz package/400Regular/NotoSansSC_400Regular.ttf \\
        package/LICENSE_FONT
    cd - && pip install fonttools brotli   # both in the dev extra
    python -m warning.web.tools.build_font /tmp/font/package

Output (in ``warning/web/static/``): ``NotoSansSC-subset.woff2`` and ``LICENSE-noto-sans-sc.txt`` (the package's
``LICENSE_FONT``, the OFL text). The characters kept (``wanted_chars``):

* GB 2312 level 1, the 3,755 most frequent hanzi (from Python's own ``gb2312`` codec, no list to download): the
  operators' free text (approval edits, reasons) and the chrome's zh strings are drawn from common characters;
* every CJK character in the shipped data and the dashboard: ``warning/data/*`` (rules.toml's basis and
  guidance texts, regions.csv, stations.csv), the region shapes' names, ``warning/web/static/*.html|js`` and
  the service's Python sources (headlines and messages composed in code);
* CJK punctuation (U+3000-303F), the full-width forms (U+FF01-FF5E, U+FFE5) and ℃.

Latin text is left to the system's UI font: the face is declared in app.css with a ``unicode-range`` of the CJK
blocks (``UNICODE_RANGE``), so the browser loads it only for Chinese text. Re-run after adding Chinese text
with characters outside GB 2312 level 1 (tests/unit/test_cjk_font.py fails naming them); SOURCES.md records the
package, its tarball checksum and the counts printed here.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
STATIC = HERE.parent / "static"
WARNING = HERE.parent.parent  # the ``warning`` package
FONT_NAME = "NotoSansSC-subset.woff2"
LICENSE_NAME = "LICENSE-noto-sans-sc.txt"
SOURCE_TTF = "400Regular/NotoSansSC_400Regular.ttf"

# What counts as a CJK character here (and in the font's unicode-range in app.css): radicals, CJK symbols and
# punctuation, extension A, unified ideographs, compatibility ideographs, full-width forms, the supplementary
# ideographic plane (rare characters of place names).
CJK = re.compile(r"[\u2e80-\u2fdf\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef\u2103"
                 r"\U00020000-\U0002ffff]")
UNICODE_RANGE = "U+2103, U+2E80-2FDF, U+3000-303F, U+3400-4DBF, U+4E00-9FFF, U+F900-FAFF, U+FF00-FFEF, U+20000-2FFFF"
SCANNED_SUFFIXES = (".py", ".toml", ".csv", ".geojson", ".html", ".js", ".json")


def gb2312_level1() -> set[str]:
    """The 3,755 hanzi of GB 2312 level 1 (rows 16-55, byte pairs 0xB0A1-0xD7F9)."""
    chars: set[str] = set()
    for row in range(0xB0, 0xD8):
        for cell in range(0xA1, 0xFF):
            try:
                chars.add(bytes((row, cell)).decode("gb2312"))
            except UnicodeDecodeError:  # 0xD7FA-0xD7FE are unassigned
                continue
    return chars


def repo_cjk_chars(root: Path = WARNING) -> set[str]:
    """Every CJK character in the shipped data, the dashboard's files and the service's sources."""
    chars: set[str] = set()
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix in SCANNED_SUFFIXES and "__pycache__" not in path.parts:
            chars |= set(CJK.findall(path.read_text(encoding="utf-8", errors="ignore")))
    return chars


def wanted_chars() -> set[str]:
    punctuation = {chr(c) for c in range(0x3000, 0x3040)} | {chr(c) for c in range(0xFF01, 0xFF5F)}
    return gb2312_level1() | repo_cjk_chars() | punctuation | {"\uffe5", "\u2103"}


def build(package: Path, out_dir: Path = STATIC) -> tuple[int, int]:
    """Subset the package's Regular TTF to ``wanted_chars`` into ``out_dir``; (characters kept, bytes)."""
    from fontTools import subset  # build-time only (dev extra), never imported by the service
    from fontTools.ttLib import TTFont

    source = TTFont(package / SOURCE_TTF, recalcTimestamp=False)  # the source's date: the same bytes each run
    cmap = source.getBestCmap()
    wanted = wanted_chars()
    missing = sorted(c for c in wanted if ord(c) not in cmap)
    if missing:
        print(f"not in the source font (left out): {''.join(missing)}", file=sys.stderr)
    options = subset.Options()
    options.flavor = "woff2"
    options.layout_features = ["*"]  # keep vertical/locl forms the browser may ask for; small for CJK
    options.name_IDs = ["*"]  # keep copyright, licence and font names (the OFL asks for the copyright notice)
    options.hinting = False  # TrueType hints are ignored by Chromium's renderer on Linux and cost ~10%
    options.desubroutinize = True  # better brotli compression
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=[ord(c) for c in wanted if ord(c) in cmap])
    subsetter.subset(source)
    out = out_dir / FONT_NAME
    subset.save_font(source, str(out), options)
    (out_dir / LICENSE_NAME).write_bytes((package / "LICENSE_FONT").read_bytes())
    kept = len(TTFont(out).getBestCmap())
    return kept, out.stat().st_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", type=Path, help="the unpacked npm package directory (holding 400Regular/)")
    parser.add_argument("--out", type=Path, default=STATIC)
    args = parser.parse_args(argv)
    kept, size = build(args.package, args.out)
    print(f"{args.out / FONT_NAME}: {kept} characters, {size:,} bytes; unicode-range: {UNICODE_RANGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
