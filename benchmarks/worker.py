"""`ews run` for the benchmarks: the real CLI entry point, with a bigger synthetic station registry.

The packaged registry (``warning/data/stations.csv``) has 90 stations; issue 8 measures 2,400. With
``BENCH_STATIONS=N`` (N > 90) the registry is replaced, before anything loads it, by N stations cloned from the
real ones (same counties, prefectures and elevations; ids ``B00000``..). Nothing else changes: this runs
``warning.cli.main(["run"])``. Run as ``python -m benchmarks.worker``.
"""

from __future__ import annotations

import os
import sys

from warning.shared import regions


def synthetic_registry(n: int) -> regions.StationRegistry:
    """``n`` stations: the real ones' attributes cycled, ids ``B%05d``."""
    real = regions.StationRegistry.from_csv(regions._read_data(regions.STATIONS_FILE)).stations()
    out = []
    for i in range(n):
        s = real[i % len(real)]
        out.append(regions.Station(
            station_id=f"B{i:05d}", name=f"{s.name} #{i}", name_zh=f"{s.name_zh}{i}", latitude=s.latitude,
            longitude=s.longitude, elevation_m=s.elevation_m, county_code=s.county_code,
            county_name=s.county_name, prefecture_code=s.prefecture_code, prefecture_name=s.prefecture_name))
    return regions.StationRegistry(out)


def install_registry(n: int) -> None:
    """Make ``StationRegistry.load()`` return the synthetic registry in this process."""
    reg = synthetic_registry(n)
    regions._default_registry = lambda: reg  # type: ignore[assignment]


def main() -> int:
    n = int(os.environ.get("BENCH_STATIONS", "0") or 0)
    if n > 0:
        install_registry(n)
    from warning.cli import main as cli_main

    return cli_main(["run", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
