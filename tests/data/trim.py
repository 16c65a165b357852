"""Rebuild tests/data from the team's offline data collection (the ``data`` folder whose per-folder README.md
files give every upstream origin): ``python tests/data/trim.py SOURCE_DATA_DIR [OUT_DIR]``.

Copies only the files the tests read and trims them without changing a value the tests assert (README.md
here says what each step removes). Needs xarray, netCDF4 and scipy (the dev extra). Writes are reproducible:
gzip members carry no name and mtime 0. Prints the size and sha256 of every file written.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import shutil
import sys
from pathlib import Path

DERIVED = ("spi_03_gamma_cal1981-2010", "spi_03_pearson3_cal1981-2010", "spi_01_pearson3_cal1981-2010",
           "spei_03_gamma_cal1895-2017", "spei_03_pearson3_cal1895-2017")  # the derived cases the tests read
VERBATIM = [
    "cap/CAP-v1.2.xsd",
    "cap/upstream_IBM_cap_resources_README.md",
    *(f"cap/examples/{n}" for n in ("CanadaNaad.xml", "NOAA_MultiplePolygons.txt", "australia_bom.cap",
                                    "iceland_met_office.cap", "mexico.xml", "noaa_errors.cap",
                                    "oasis_spec_amber_alert_example.cap.xml")),
    "heat_index/heat_index_vectors.json",
    "heat_index/nws_chart_transcribed.csv",
    "netcdf/era5_1995-07-14T12.nc",
    "netcdf/era5_2t_1.nc",
    "netcdf/ahccd_1950-2013.nc",
    "spi_cases/LICENSE.climate_indices",
    *(f"spi_cases/fixture/{n}.npy" for n in ("precips_mm_monthly", "pet_thornthwaite", "temp_celsius",
                                             "precips_mm_daily", "spi_01_gamma", "spi_06_gamma", "spi_06_pearson3",
                                             "spei_06_gamma", "spei_06_pearson3")),
    *(f"spi_cases/derived/{n}.npy" for n in DERIVED),
    "station_obs/isd_lite/545110-99999-2017",
]
DLY_ELEMENTS = ("TMAX", "TMIN", "PRCP", "AWND", "WSFG")  # ingest.formats.ghcn_daily.ELEMENTS
CSV_DROP = ("SNWD", "SNWD_ATTRIBUTES", "TAVG", "TAVG_ATTRIBUTES")  # no Observation field
CSV_ELEMENTS = ("PRCP", "TMAX", "TMIN")
SASKATOON = "Saskatoon"
ERA5_WINDOW = {"latitude": slice(42.5, 35.5), "longitude": slice(-116.0, -87.0)}  # latitude is descending


def write_gz(dst: Path, data: bytes) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(dst, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
        gz.write(data)


def trim_dly(src: Path, dst: Path) -> None:
    """Only the lines of the elements the reader maps (the others yield no Observation field)."""
    lines = src.read_bytes().splitlines(keepends=True)
    write_gz(dst, b"".join(ln for ln in lines if ln[17:21].decode() in DLY_ELEMENTS))


def trim_ghcn_csv(src: Path, dst: Path) -> None:
    """Without the SNWD/TAVG columns, and without the rows left with no PRCP/TMAX/TMIN value. Fields are
    written back as upstream writes them: every non-empty field quoted, empty ones bare, LF line ends."""
    rows = list(csv.reader(io.StringIO(src.read_text(encoding="utf-8"), newline="")))
    header = rows[0]
    keep = [i for i, name in enumerate(header) if name not in CSV_DROP]
    elements = [header.index(name) for name in CSV_ELEMENTS]
    out = [header] + [r for r in rows[1:] if any(r[i] for i in elements)]
    text = "".join(",".join(f'"{r[i]}"' if r[i] else "" for i in keep) + "\n" for r in out)
    write_gz(dst, text.encode("utf-8"))


def trim_netcdf(src: Path, out: Path) -> None:
    """The daily city file cut to Saskatoon (the only location the tests read), its NetCDF-3 twin re-derived
    from that cut, and the NetCDF-3 ERA5 copy cut to a window round the two points the test compares."""
    import xarray as xr

    cities = out / "netcdf" / "daily_surface_cancities_1990-1993.saskatoon.nc"
    cities.parent.mkdir(parents=True, exist_ok=True)
    with xr.open_dataset(src / "netcdf" / "daily_surface_cancities_1990-1993.nc") as ds:
        ds.sel(location=[SASKATOON]).to_netcdf(cities, format="NETCDF4", engine="netcdf4")
    nc3 = out / "netcdf" / "derived_netcdf3"
    nc3.mkdir(parents=True, exist_ok=True)
    with xr.open_dataset(cities) as ds:
        ds.to_netcdf(nc3 / "daily_surface_cancities_1990-1993.saskatoon.nc3.nc", format="NETCDF3_64BIT",
                     engine="scipy")
    with xr.open_dataset(src / "netcdf" / "era5_1995-07-14T12.nc") as ds:
        ds.sel(ERA5_WINDOW).to_netcdf(nc3 / "era5_1995-07-14T12.window.nc3.nc", format="NETCDF3_64BIT",
                                      engine="scipy")


def trim_derived_cases(src: Path, dst: Path) -> None:
    cases = json.loads(src.read_text(encoding="utf-8"))
    dst.write_text(json.dumps({k: v for k, v in cases.items() if k in DERIVED}, indent=1) + "\n", encoding="utf-8")


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print(__doc__, file=sys.stderr)
        return 2
    src = Path(argv[0])
    out = Path(argv[1]) if len(argv) == 2 else Path(__file__).resolve().parent
    for rel in VERBATIM:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / rel, out / rel)
    trim_derived_cases(src / "spi_cases/derived/derived_cases.json", out / "spi_cases/derived/derived_cases.json")
    obs = "station_obs"
    trim_dly(src / obs / "ghcnd_dly/USW00023062.dly", out / obs / "ghcnd_dly/USW00023062.dly.gz")
    trim_ghcn_csv(src / obs / "ghcnd_csv/CHM00054511.csv", out / obs / "ghcnd_csv/CHM00054511.csv.gz")
    write_gz(out / obs / "isd_lite/545110-99999-2017.as_committed.txt.gz",
             (src / obs / "isd_lite/545110-99999-2017.as_committed.txt").read_bytes())
    trim_netcdf(src, out)
    for path in sorted(p for p in out.rglob("*") if (p.is_file() and p.suffix not in (".py", ".md"))
                       or p.name.endswith("_README.md")):
        print(f"{path.stat().st_size:>9,}  {hashlib.sha256(path.read_bytes()).hexdigest()}  {path.relative_to(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
