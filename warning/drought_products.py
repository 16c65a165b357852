"""Monthly SPI drought monitoring (an information product, not a signal): for each station with fitted SPI
parameters, the SPI of the last complete calendar months from the daily precipitation the pipeline keeps
(150 days, so scales 1 and 3), graded with GB/T 20481-2017 classes."""

from __future__ import annotations

from typing import Any

import numpy as np

from indices.drought import DROUGHT_GRADE_NAMES, drought_grade


def monthly_totals(pd: dict[str, float]) -> list[tuple[str, float]]:
    """(YYYY-MM, total mm) of every calendar month fully covered by daily totals, in time order."""
    by_month: dict[str, list[float]] = {}
    for day, mm in pd.items():
        by_month.setdefault(day[:7], []).append(mm)
    out = []
    for month in sorted(by_month):
        y, m = int(month[:4]), int(month[5:7])
        days_in = (np.datetime64(f"{y + (m == 12):04d}-{m % 12 + 1:02d}-01") - np.datetime64(f"{month}-01")).astype(int)
        if len(by_month[month]) == days_in:
            out.append((month, float(sum(by_month[month]))))
    return out


def spi_product(states: dict[str, dict[str, Any]], climatology: Any, names: dict[str, str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    spi_of = getattr(climatology, "spi", None)
    if spi_of is None:
        return out
    for sid, st in sorted(states.items()):
        months = monthly_totals(st.get("pd", {}))
        # consecutive complete months ending with the latest one
        run: list[tuple[str, float]] = []
        for month, total in reversed(months):
            if run and _prev(run[0][0]) != month:
                break
            run.insert(0, (month, total))
        if not run:
            continue
        values = spi_of(sid, [t for _, t in run], int(run[-1][0][5:7]))
        if not values:
            continue
        row: dict[str, Any] = {"station_id": sid, "name": names.get(sid, sid), "month": run[-1][0]}
        zeros_of = getattr(climatology, "spi_zeros", None)
        if zeros_of is not None:  # the zero handling used: center_of_mass for arid stations (labelled)
            row["spi_zeros"] = zeros_of(sid)
        for scale, z in sorted(values.items()):
            if z == z:  # not NaN
                grade = int(np.asarray(drought_grade(np.array([z]), "spi"))[0])
                row[f"spi{scale}"] = round(float(z), 3)
                row[f"spi{scale}_class"] = DROUGHT_GRADE_NAMES[grade]
        out.append(row)
    return out


def _prev(month: str) -> str:
    y, m = int(month[:4]), int(month[5:7])
    return f"{y - (m == 1):04d}-{(m - 2) % 12 + 1:02d}"
