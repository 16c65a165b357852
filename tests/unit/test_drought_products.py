import numpy as np

from indices.drought import spi_fit, spi_from_params
from warning.drought_products import monthly_totals, spi_product


def test_monthly_totals_need_every_day() -> None:
    pd = {f"2026-06-{d:02d}": 1.0 for d in range(1, 31)} | {f"2026-07-{d:02d}": 2.0 for d in range(1, 31)}
    assert monthly_totals(pd) == [("2026-06", 30.0)]  # July lacks the 31st


class Clim:
    """SPI-1/3 parameters fitted on 30 synthetic years; spi() as warning.climatology.Climatology does it."""

    def __init__(self) -> None:
        rng = np.random.default_rng(5)
        monthly = rng.gamma(2.0, 15.0, 360)
        self.params = {k: spi_fit(monthly, k, start_year=1981) for k in (1, 3)}

    def spi(self, sid: str, recent: list[float], month: int) -> dict[int, float]:
        out = {}
        for k, prm in self.params.items():
            if len(recent) >= k:
                out[k] = float(np.asarray(spi_from_params(np.array([sum(recent[-k:])]), month - 1, prm))[0])
        return out


def test_spi_product_for_a_dry_spell() -> None:
    pd = {}
    for month, n in (("2026-04", 30), ("2026-05", 31), ("2026-06", 30)):
        pd |= {f"{month}-{d:02d}": 0.0 for d in range(1, n + 1)}
    [row] = spi_product({"52889": {"pd": pd}}, Clim(), {"52889": "兰州"})
    assert row["month"] == "2026-06" and row["spi1"] <= -2.0 and row["spi3"] <= -2.0
    assert row["spi3_class"].startswith("extreme")
