"""Drought indices: SPI, SPEI, Thornthwaite and Hargreaves PET, GB/T 20481-2017 grades and the MCI.

Series run along the **last axis** (months from January of ``start_year`` for ``periodicity="monthly"``,
366-day years as in climate_indices for ``"daily"``) and are vectorised over leading axes: the
distribution fits are computed for all series and calendar steps at once (no loop per station).
NaN is missing. See ../shared/docs/STANDARDS.md sections 1.3, 2.1, 2.2, 3.1, 3.2.
"""

from __future__ import annotations

import calendar
import warnings
from typing import Any

import numpy as np
import xarray as xr
from scipy import special

from indices._blocks import (
    ArrayLike,
    Data,
    FloatArray,
    as_array,
    first_dataarray,
    harmonize,
    require_time_axis,
    rolling_sum,
    time_last,
    trailing_weighted_sum,
    wrap_like,
)
from indices.units import quantity

# ------------------------------------------------------------------------------------------ constants
#: Output clip of SPI/SPEI (Guttman: |z| > 3.09, p < 0.001, is not meaningful for ~100-year samples).
SPI_CLIP = 3.09
#: Time steps per year for each periodicity (daily uses 366-day years, Feb 29 padded, as climate_indices).
PERIODICITY_STEPS = {"monthly": 12, "daily": 366}
SPI_DISTRIBUTIONS = ("gamma", "pearson3")
#: How a zero accumulation is scored, given the zero probability q of the calibration period:
#: ``"classic"`` H = q (McKee et al. 1993; climate_indices' default): in a hyper-arid month with q = 0.8 a month
#: without rain scores SPI = Phi^-1(0.8) = +0.84, wetter than normal, so drought cannot register;
#: ``"center_of_mass"`` H = q / 2, the middle of the zero mass (Stagge et al. 2015, Int. J. Climatol. 35:4027,
#: "centre of mass" zero handling; the name of the option as in climate_indices 3.1 per issue 18, not read here:
#: UNCONFIRMED), so a dry month scores Phi^-1(q/2) <= 0 whatever q.
SPI_ZERO_HANDLING = ("classic", "center_of_mass")
#: MI30 in MCI: ``"raw"`` the relative moisture index (P - PET) / PET as GB/T 20481-2017 adds it (near -1 all year
#: where PET >> P: arid stations read as in drought in normal years); ``"standardized"`` its z-score per calendar
#: day over the calibration years, like the other (standardized) terms: the service's choice for arid stations
#: (UNCONFIRMED as any standard's; labelled in the climatology summary).
MCI_MI_MODES = ("raw", "standardized")
SPEI_DISTRIBUTIONS = ("loglogistic", "gamma", "pearson3")
#: climate_indices' offset that makes P - PET positive before gamma / Pearson III fitting.
SPEI_OFFSET_MM = 1000.0
#: Pearson III: minimum number of non-zero calibration values, and the trace-value limit (climate_indices).
PEARSON_MIN_NONZERO = 4
PEARSON_TRACE = 0.0005
PEARSON_SUPPORT_PROB = (0.0005, 0.9995)
#: Hosking (1996) PELPE3 rational-approximation coefficients (C1..C3, D1..D6).
PEARSON3_HOSKING = (0.2906, 0.1882, 0.0442, 0.36067, -0.59567, 0.25361, -2.78861, 2.56096, -0.77045)
#: |shape| below which the generalized logistic is treated as the logistic (Hosking PELGLO).
GLO_SMALL = 1e-6
#: Vicente-Serrano et al. (2010) plotting position F_i = (i - a) / N.
VS2010_PLOTTING_A = 0.35
PWM_ESTIMATORS = ("unbiased", "plotting")
MIN_LMOMENT_VALUES = 4

#: GB/T 20481-2017 grades (1 无旱 .. 5 特旱): upper-inclusive limits (grade g where index <= limit).
#: Confirmed: 干旱气象 2024 42(6) Table 3; 高原气象 table.
DROUGHT_GRADE_LIMITS: dict[str, tuple[float, float, float, float]] = {
    "spi": (-0.5, -1.0, -1.5, -2.0),
    "spei": (-0.5, -1.0, -1.5, -2.0),
    "mci": (-0.5, -1.0, -1.5, -2.0),
    "mi": (-0.40, -0.65, -0.80, -0.95),
}
DROUGHT_GRADE_NAMES = {1: "none 无旱", 2: "light 轻旱", 3: "moderate 中旱", 4: "severe 重旱",
                       5: "extreme 特旱"}

SPI_REF = ("McKee, Doesken & Kleist (1993) 8th Conf. Applied Climatology; "
           "WMO-No. 1090 (2012) SPI User Guide; Thom (1958) gamma estimator; "
           "algorithm of climate_indices (Adams 2017) indices.spi")
SPEI_REF = ("Vicente-Serrano, Beguería & López-Moreno (2010) J. Climate 23:1696; "
            "Hosking (1990, 1996) L-moments; Beguería et al. (2014) Int. J. Climatol. 34:3001 (ub-PWM)")
THORNTHWAITE_REF = "Thornthwaite (1948) Geogr. Rev. 38:55-94; FAO-56 (Allen et al. 1998) eqs. 24, 25, 34"
HARGREAVES_REF = "Hargreaves & Samani (1985); FAO-56 (Allen et al. 1998) eqs. 21, 23-25, 52"
GRADE_REF = "GB/T 20481-2017 气象干旱等级 (grade limits confirmed via 干旱气象 2024 42(6) Table 3)"

# FAO-56 astronomy
SOLAR_CONSTANT_MJ = 0.0820  # MJ m-2 min-1
MJ_TO_MM = 0.408
DECLINATION_AMPLITUDE = 0.409
DECLINATION_PHASE = 1.39
ECCENTRICITY = 0.033
HARGREAVES_COEF = 0.0023
HARGREAVES_T_OFFSET = 17.8
#: Thornthwaite exponent polynomial a = c3 I^3 + c2 I^2 + c1 I + c0 and heat-index exponent.
THORNTHWAITE_A = (6.75e-07, -7.71e-05, 1.792e-02, 0.49239)
THORNTHWAITE_I_EXP = 1.514
MONTH_DAYS = {False: np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]),
              True: np.array([31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])}


# ------------------------------------------------------------------------------------------ helpers
def _steps(periodicity: str) -> int:
    try:
        return PERIODICITY_STEPS[periodicity]
    except KeyError as exc:
        raise ValueError(
            f"periodicity must be one of {sorted(PERIODICITY_STEPS)}, got {periodicity!r}") from exc


class _Layout:
    """Where each time step goes in the (years, calendar steps) fitting grid.

    Plain arrays: consecutive steps from January of ``start_year`` (12 or 366 per year, as climate_indices).
    DataArrays with a datetime64 time coordinate: placed by their dates (monthly: any start month,
    consecutive months required; daily: real consecutive days, Feb 29 slot only in leap years).
    """

    def __init__(self, like: xr.DataArray | None, start_year: int | None, periodicity: str, n: int) -> None:
        self.steps = _steps(periodicity)
        self.n = n
        self.years: np.ndarray | None = None
        self.slots: np.ndarray | None = None
        coord = None
        if like is not None and like.dims and np.issubdtype(like[like.dims[-1]].dtype, np.datetime64):
            coord = like[like.dims[-1]].values
        if coord is None or n == 0:
            if start_year is None:
                raise ValueError("start_year is required (the first value is January of start_year)")
            self.start_year = int(start_year)
            self.n_years = -(-n // self.steps)
            return
        if periodicity == "monthly":
            months = coord.astype("datetime64[M]").astype(np.int64)
            if n > 1 and np.any(np.diff(months) != 1):
                raise ValueError("monthly series must have consecutive months along time")
            years = months // 12 + 1970
            self.slots = months % 12
        else:
            days = coord.astype("datetime64[D]")
            if n > 1 and np.any(np.diff(days).astype(np.int64) != 1):
                raise ValueError("daily series must have consecutive days along time")
            rows, self.slots, y0 = _daily_slots(days, n)
            years = rows + y0
        y0 = int(years[0])
        if start_year is not None and int(start_year) != y0:
            raise ValueError(f"start_year {start_year} contradicts the time coordinate (starts {y0})")
        self.start_year = y0
        self.years = years - y0
        self.n_years = int(self.years[-1]) + 1

    def fold(self, x: FloatArray) -> FloatArray:
        if self.years is None:
            return _fold(x, self.steps)
        out = np.full((*x.shape[:-1], self.n_years, self.steps), np.nan)
        out[..., self.years, self.slots] = x
        return out

    def unfold(self, folded: FloatArray) -> FloatArray:
        if self.years is None:
            return _unfold(folded, self.n)
        return np.asarray(folded[..., self.years, self.slots])


def _fold(x: FloatArray, steps: int) -> FloatArray:
    """(..., n) -> (..., years, steps), NaN-padded at the end."""
    n = x.shape[-1]
    years = -(-n // steps)
    pad = years * steps - n
    if pad:
        x = np.concatenate([x, np.full((*x.shape[:-1], pad), np.nan)], axis=-1)
    return x.reshape(*x.shape[:-1], years, steps)


def _unfold(folded: FloatArray, n: int) -> FloatArray:
    return folded.reshape(*folded.shape[:-2], -1)[..., :n]


def calibration_rows(start_year: int, n_years: int, calibration: tuple[int, int]) -> slice:
    """Rows (years) of the calibration period, with climate_indices' "clamp" policy: a period starting
    before the record or ending more than one year after it falls back to the whole record; otherwise it is
    cut at the record's last year."""
    c0, c1 = int(calibration[0]), int(calibration[1])
    if c0 > c1:
        raise ValueError(f"calibration start {c0} is after its end {c1}")
    end_year = start_year + n_years - 1
    if c0 < start_year or c1 > end_year + 1:
        c0, c1 = start_year, end_year
    else:
        c1 = min(c1, end_year)
    return slice(c0 - start_year, c1 - start_year + 1)


def _ndtri_clipped(p: FloatArray) -> FloatArray:
    with np.errstate(invalid="ignore", divide="ignore"):
        z = special.ndtri(p)
    return np.asarray(np.clip(z, -SPI_CLIP, SPI_CLIP), dtype=np.float64)


# ------------------------------------------------------------------------------------------ gamma
def gamma_fit(cal: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Thom (1958) gamma fit over axis -2 (years) of calibration values, zeros excluded.

    A = ln(mean) - mean(ln x); alpha = (1 + sqrt(1 + 4A/3)) / (4A); beta = mean / alpha. Returns
    (alpha, beta, q) with q the fraction of zeros among the non-missing calibration values (NaN if none).

    References: Thom (1958) Mon. Wea. Rev. 86:117; climate_indices ``compute.gamma_parameters``.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        pos = np.where(cal > 0.0, cal, np.nan)
        n_pos = np.sum(cal > 0.0, axis=-2)
        means = np.nansum(pos, axis=-2) / n_pos
        mean_logs = np.nansum(np.log(pos), axis=-2) / n_pos
        a = np.log(means) - mean_logs
        alpha = (1.0 + np.sqrt(1.0 + 4.0 * a / 3.0)) / (4.0 * a)
        beta = means / alpha
        n_valid = np.sum(~np.isnan(cal), axis=-2)
        q = np.where(n_valid > 0, np.sum(cal == 0.0, axis=-2) / n_valid, np.nan)
    return alpha, beta, q


def _check_zeros(zeros: str) -> None:
    if zeros not in SPI_ZERO_HANDLING:
        raise ValueError(f"zeros must be one of {SPI_ZERO_HANDLING}, got {zeros!r}")


def gamma_transform(x: FloatArray, alpha: FloatArray, beta: FloatArray, q: FloatArray,
                    zeros: str = "classic") -> FloatArray:
    """z = Phi^-1(q + (1 - q) G(x; alpha, beta)), clipped to +-3.09.

    x: (..., years, steps); params (..., steps).

    q >= 1 (all calibration values zero) is reset to 0, so zeros map to -3.09 (dry) rather than +inf;
    zeros where q is undefined are NaN (climate_indices 3.x behaviour). ``zeros="center_of_mass"`` scores a zero
    accumulation Phi^-1(q / 2) instead of Phi^-1(q) (``SPI_ZERO_HANDLING``).

    References: McKee et al. (1993); climate_indices ``compute.transform_fitted_gamma``; Stagge et al. (2015).
    """
    _check_zeros(zeros)
    a, b, qq = alpha[..., None, :], beta[..., None, :], q[..., None, :]
    undefined = np.isnan(qq)
    q_eff = np.where((qq >= 1.0) | undefined, 0.0, qq)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        g = special.gammainc(a, np.where(x > 0, x, np.nan) / b)  # regularized lower incomplete gamma
        g = np.where(x <= 0.0, 0.0, g)
        p = q_eff + (1.0 - q_eff) * g
        if zeros == "center_of_mass":
            p = np.where(x <= 0.0, q_eff / 2.0, p)
        z = _ndtri_clipped(p)
        z = np.where((x <= 0.0) & undefined, np.nan, z)
    return np.where(np.isnan(x), np.nan, z)


# ------------------------------------------------------------------------------------------ L-moments
def sample_lmoments(cal: FloatArray, estimator: str = "unbiased") -> tuple[FloatArray, FloatArray, FloatArray,
                                                                           FloatArray]:
    """First three sample L-moments (l1, l2, t3) over axis -2, ignoring NaN, plus the sample size.

    ``estimator="unbiased"``: b_r from Hosking's unbiased PWMs (SAMLMR); ``"plotting"``: b_r = (1/N)
    sum F_i^r x_(i) with F_i = (i - 0.35)/N (Vicente-Serrano et al. 2010). l1 = b0, l2 = 2b1 - b0,
    l3 = 6b2 - 6b1 + b0, t3 = l3/l2.

    References: Hosking (1990) J. R. Stat. Soc. B 52:105-124; Hosking (1996) IBM Res. Rep. RC20525 (SAMLMR).
    """
    if estimator not in PWM_ESTIMATORS:
        raise ValueError(f"estimator must be one of {PWM_ESTIMATORS}, got {estimator!r}")
    xs = np.sort(cal, axis=-2)  # NaN last
    n = np.sum(~np.isnan(cal), axis=-2).astype(np.float64)[..., None, :]
    i = np.arange(1, cal.shape[-2] + 1, dtype=np.float64)[:, None]
    inside = i <= n
    x0 = np.where(inside, xs, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        if estimator == "unbiased":
            w1 = (i - 1.0) / (n - 1.0)
            w2 = (i - 1.0) * (i - 2.0) / ((n - 1.0) * (n - 2.0))
        else:
            f = (i - VS2010_PLOTTING_A) / n
            w1, w2 = f, f * f
        b0 = np.sum(x0, axis=-2) / n[..., 0, :]
        b1 = np.sum(np.where(inside, x0 * w1, 0.0), axis=-2) / n[..., 0, :]
        b2 = np.sum(np.where(inside, x0 * w2, 0.0), axis=-2) / n[..., 0, :]
        l2 = 2.0 * b1 - b0
        t3 = (6.0 * b2 - 6.0 * b1 + b0) / l2
    return b0, l2, t3, n[..., 0, :]


def pearson3_fit(cal: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """Pearson III by L-moments (Hosking PELPE3) per step over axis -2, as climate_indices.

    Zeros stay in the L-moment sample; q = zeros / non-missing; a step needs >= 4 non-zero values and valid
    L-moments (l2 > 0, |t3| < 1). Returns (q, loc, scale, skew, valid).

    References: Hosking (1996) IBM Res. Rep. RC20525 (PELPE3); climate_indices ``compute.pearson_parameters``.
    """
    c1, c2, c3, d1, d2, d3, d4, d5, d6 = PEARSON3_HOSKING
    l1, l2, t3, n = sample_lmoments(cal)
    n_zero = np.sum(cal == 0.0, axis=-2)
    valid = (n - n_zero >= PEARSON_MIN_NONZERO) & (l2 > 0) & (np.abs(t3) < 1.0) & (n >= MIN_LMOMENT_VALUES)
    at3 = np.abs(t3)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        t = np.pi * 3.0 * at3 * at3
        alpha_lo = (1.0 + c1 * t) / (t * (1.0 + t * (c2 + t * c3)))
        u = 1.0 - at3
        alpha_hi = u * (d1 + u * (d2 + u * d3)) / (1.0 + u * (d4 + u * (d5 + u * d6)))
        alpha = np.where(at3 < 0.333333333, alpha_lo, alpha_hi)
        beta = np.sqrt(np.pi) * l2 / special.poch(alpha, 0.5)
        small = at3 <= 1e-6
        scale = np.where(small, l2 * np.sqrt(np.pi), beta * np.sqrt(alpha))
        skew = np.where(small, 0.0, np.where(t3 < 0, -2.0, 2.0) / np.sqrt(alpha))
        q = np.where(n_zero > 0, n_zero / n, 0.0)
    return q, l1, scale, skew, valid.astype(np.float64)


#: |skew| below which Pearson III is evaluated as the normal distribution (scipy's transition value).
PEARSON3_NORMAL_SKEW = 1.6e-5


def pearson3_cdf(x: FloatArray, skew: FloatArray, loc: FloatArray, scale: FloatArray) -> FloatArray:
    """Pearson III CDF (same parametrisation as ``scipy.stats.pearson3``) via the incomplete gamma function:
    alpha = 4/skew^2, beta = scale skew/2, xi = loc - 2 scale/skew; F = P(alpha, (x - xi)/beta) for skew > 0,
    Q(alpha, (x - xi)/beta) for skew < 0 (0/1 outside the support), the normal CDF for |skew| < 1.6e-5."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        normal = np.abs(skew) < PEARSON3_NORMAL_SKEW
        safe = np.where(normal, 1.0, skew)
        alpha = 4.0 / (safe * safe)
        beta = scale * safe / 2.0
        y = np.maximum((x - (loc - 2.0 * scale / safe)) / beta, 0.0)
        f = np.where(safe > 0, special.gammainc(alpha, y), special.gammaincc(alpha, y))
        f = np.where(normal, special.ndtr((x - loc) / scale), f)
    return np.where(np.isnan(x), np.nan, f)


def pearson3_transform(x: FloatArray, q: FloatArray, loc: FloatArray, scale: FloatArray, skew: FloatArray,
                       valid: FloatArray, zeros: str = "classic") -> FloatArray:
    """z = Phi^-1(q + (1 - q) F_P3(x)), with climate_indices' support-limit and trace rules, clipped;
    ``zeros="center_of_mass"``: a zero (trace) accumulation scores Phi^-1(q / 2) (``SPI_ZERO_HANDLING``)."""
    _check_zeros(zeros)
    qq, lo, sc, sk, ok = (v[..., None, :] for v in (q, loc, scale, skew, valid))
    qq = np.where(ok == 1, qq, 0.0)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        good = ok == 1
        cdf = pearson3_cdf(x, np.where(good, sk, 0.0), np.where(good, lo, 0.0), np.where(good, sc, 1.0))
        limit = lo - 2.0 * sc / sk
        minimum = (x <= limit) & (sk >= 0)
        maximum = (x >= limit) & (sk < 0)
        zero = (x < PEARSON_TRACE) & (qq > 0.0)
        trace = (x < PEARSON_TRACE) & (qq <= 0.0)
        cdf = np.where(zero, 0.0, cdf)
        cdf = np.where(trace, PEARSON_SUPPORT_PROB[0], cdf)
        cdf = np.where(minimum, PEARSON_SUPPORT_PROB[0], cdf)
        cdf = np.where(maximum, PEARSON_SUPPORT_PROB[1], cdf)
        p = np.clip(qq + (1.0 - qq) * cdf, 0.0, 1.0)
        if zeros == "center_of_mass":
            p = np.where(zero, qq / 2.0, p)
    z = _ndtri_clipped(p)
    # a failed fit (climate_indices zeroes its parameters): trace values score -3.09, the rest are missing
    z = np.where(good, z, np.where(x < PEARSON_TRACE, -SPI_CLIP, np.nan))
    return np.where(np.isnan(x), np.nan, z)


def glo_fit(cal: FloatArray, estimator: str = "unbiased") -> tuple[FloatArray, FloatArray, FloatArray,
                                                                   FloatArray]:
    """Three-parameter log-logistic (generalized logistic, Hosking PELGLO) by L-moments over axis -2.

    k = -t3; alpha = l2 / (k pi / sin(k pi)); xi = l1 - alpha (1 - k pi / sin(k pi)) / k (k -> 0: alpha = l2,
    xi = l1). This is the three-parameter log-logistic of Vicente-Serrano et al. (2010),
    F = [1 + (a / (x - g))^b]^-1, reparametrised: b = -1/k = 1/t3, a = alpha b, g = xi - alpha b (their
    PWM formulas give exactly these values from the same PWMs). Returns (loc, scale, shape, valid).

    References: Hosking (1996) IBM Res. Rep. RC20525 (PELGLO); Vicente-Serrano et al. (2010) J. Climate 23:1696.
    """
    l1, l2, t3, n = sample_lmoments(cal, estimator)
    k = -t3
    valid = (l2 > 0) & (np.abs(k) < 1.0) & (n >= MIN_LMOMENT_VALUES)
    small = np.abs(k) <= GLO_SMALL
    with np.errstate(invalid="ignore", divide="ignore"):
        gg = k * np.pi / np.sin(k * np.pi)
        scale = np.where(small, l2, l2 / gg)
        loc = np.where(small, l1, l1 - scale * (1.0 - gg) / k)
    return loc, scale, np.where(small, 0.0, k), valid.astype(np.float64)


def glo_transform(x: FloatArray, loc: FloatArray, scale: FloatArray, shape: FloatArray,
                  valid: FloatArray) -> FloatArray:
    """z = Phi^-1(F(x)), F = 1 / (1 + exp(-y)), y = -ln(1 - k (x - xi)/alpha)/k ((x - xi)/alpha if k=0)."""
    lo, sc, k, ok = (v[..., None, :] for v in (loc, scale, shape, valid))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        zz = (x - lo) / sc
        y = np.where(np.abs(k) <= GLO_SMALL, zz, -np.log(np.maximum(0.0, 1.0 - k * zz)) / k)
        p = np.clip(1.0 / (1.0 + np.exp(-y)), 0.0, 1.0)
    z = _ndtri_clipped(p)
    return np.where(np.isnan(x) | (ok == 0), np.nan, z)


def _standardize(
    folded: FloatArray, rows: slice, distribution: str, estimator: str = "unbiased", zeros: str = "classic"
) -> FloatArray:
    cal = folded[..., rows, :]
    if distribution == "gamma":
        return gamma_transform(folded, *gamma_fit(cal), zeros=zeros)
    if distribution == "pearson3":
        q, loc, scale, skew, valid = pearson3_fit(cal)
        return pearson3_transform(folded, q, loc, scale, skew, valid, zeros=zeros)
    loc, scale, shape, valid = glo_fit(cal, estimator)
    return glo_transform(folded, loc, scale, shape, valid)


def _check_scale(scale: int) -> None:
    if not isinstance(scale, (int, np.integer)) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")


# ------------------------------------------------------------------------------------------ SPI / SPEI
def _spi_accumulations(precip: ArrayLike, scale: int, distribution: str, start_year: int | None,
                       calibration: tuple[int, int], periodicity: str) -> tuple[Any, Any, FloatArray, slice]:
    """The checks and accumulation :func:`spi` and :func:`spi_fit` share: (DataArray template or None, calendar
    layout, ``scale``-step sums folded to (..., years, steps), calibration rows)."""
    if distribution not in SPI_DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {SPI_DISTRIBUTIONS}, got {distribution!r}")
    _steps(periodicity)  # validates periodicity early
    precip = time_last(precip)
    like = first_dataarray(precip)
    p = quantity(precip, "mm", "precipitation", "precip")
    require_time_axis(p, "precip")
    _check_scale(scale)
    lay = _Layout(like, start_year, periodicity, p.shape[-1])
    folded = lay.fold(rolling_sum(p, scale))
    return like, lay, folded, calibration_rows(lay.start_year, lay.n_years, calibration)


def spi(
    precip: ArrayLike,
    scale: int,
    *,
    distribution: str = "gamma",
    start_year: int | None = None,
    calibration: tuple[int, int] = (1981, 2010),
    periodicity: str = "monthly",
    zeros: str = "classic",
) -> Data:
    """Standardized Precipitation Index along the last axis.

    1. S_t = sum of the last ``scale`` values (any NaN in the window -> NaN; the first scale-1 are NaN).
    2. Per calendar step (month, or day of a 366-day year), fit over the ``calibration`` years:
       * ``"gamma"``: Thom (1958) on the non-zero sums, A = ln(mean) - mean(ln S),
         alpha = (1 + sqrt(1 + 4A/3)) / (4A), beta = mean/alpha; H = q + (1 - q) G(S) with q the zero
         fraction in the calibration period;
       * ``"pearson3"``: Pearson III by L-moments (Hosking), zero mass q, climate_indices' trace/support
         rules.
    3. SPI = Phi^-1(H), clipped to [-3.09, 3.09]. ``zeros``: H of a zero sum, q (``"classic"``) or q / 2
       (``"center_of_mass"``, for arid stations; ``SPI_ZERO_HANDLING``).

    ``start_year``: year of the first value (January); inferred from a DataArray's time coordinate if
    omitted. A calibration period outside the record falls back to the whole record (climate_indices).
    Precipitation in mm (any unit gives the same SPI); negative values raise ValueError.
    Agrees with ``climate_indices.indices.spi`` (3.1.0) to ~1e-10 (gamma) on its fixtures.

    References: McKee et al. (1993); WMO-No. 1090 (2012); Thom (1958); Hosking (1990); climate_indices.
    """
    like, lay, folded, rows = _spi_accumulations(precip, scale, distribution, start_year, calibration,
                                                 periodicity)
    out = lay.unfold(_standardize(folded, rows, distribution, zeros=zeros))
    return wrap_like(out, like, units="1", long_name=f"SPI-{scale} ({distribution}, zeros {zeros})", references=SPI_REF,
                     name=f"spi_{scale}")


def spi_fit(
    precip: ArrayLike,
    scale: int,
    *,
    distribution: str = "gamma",
    start_year: int | None = None,
    calibration: tuple[int, int] = (1981, 2010),
    periodicity: str = "monthly",
) -> dict[str, FloatArray]:
    """Fit the SPI distribution per series and calendar step once (for streaming use with
    :func:`spi_from_params`): same accumulation and fit as :func:`spi`.

    Returns arrays shaped (..., steps) (leading dims of ``precip``; steps = 12 or 366): for ``"gamma"``
    ``alpha``, ``beta``, ``prob_zero`` (Thom estimator, zero fraction over the calibration period); for
    ``"pearson3"`` ``prob_zero``, ``loc``, ``scale``, ``skew``, ``valid`` (1.0 where the L-moment fit
    succeeded). A climatology store can save them (e.g. as an xarray Dataset in NetCDF).

    References: as :func:`spi`.
    """
    _, _, folded, rows = _spi_accumulations(precip, scale, distribution, start_year, calibration, periodicity)
    cal = folded[..., rows, :]
    if distribution == "gamma":
        alpha, beta, q = gamma_fit(cal)
        return {"alpha": alpha, "beta": beta, "prob_zero": q}
    q, loc, sc, skew, valid = pearson3_fit(cal)
    return {"prob_zero": q, "loc": loc, "scale": sc, "skew": skew, "valid": valid}


def spi_from_params(
    accumulated: ArrayLike,
    step: int,
    params: dict[str, FloatArray],
    *,
    distribution: str = "gamma",
    zeros: str = "classic",
) -> Data:
    """SPI of new accumulated precipitation (mm, one value per series: the ``scale``-step sum ending at the
    new step) from stored :func:`spi_fit` parameters for calendar step ``step`` (0 = January, or day slot
    0..365). Same transform and clip as :func:`spi`; no refit, so it is cheap for many stations.

    References: as :func:`spi`.
    """
    if distribution not in SPI_DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {SPI_DISTRIBUTIONS}, got {distribution!r}")
    like = first_dataarray(accumulated)
    x = quantity(accumulated, "mm", "precipitation", "accumulated")
    keys = ("alpha", "beta", "prob_zero") if distribution == "gamma" else (
        "prob_zero", "loc", "scale", "skew", "valid")
    try:
        sel = [np.asarray(params[k], dtype=np.float64)[..., step] for k in keys]
    except KeyError as exc:
        raise ValueError(f"params lacks {exc} for distribution {distribution!r}") from exc
    except IndexError as exc:
        raise ValueError(f"step {step} outside the parameter arrays") from exc
    try:
        x, *sel = np.broadcast_arrays(x, *sel)
    except ValueError as exc:
        raise ValueError(f"accumulated shape {x.shape} does not match the parameters") from exc
    xx = x[..., None, None]
    cols = [v[..., None] for v in sel]
    if distribution == "gamma":
        z = gamma_transform(xx, cols[0], cols[1], cols[2], zeros=zeros)
    else:
        z = pearson3_transform(xx, cols[0], cols[1], cols[2], cols[3], cols[4], zeros=zeros)
    return wrap_like(np.asarray(z[..., 0, 0]), like, units="1", long_name=f"SPI ({distribution})",
                     references=SPI_REF, name="spi")


def spei(
    precip: ArrayLike,
    pet: ArrayLike,
    scale: int,
    *,
    distribution: str = "loglogistic",
    start_year: int | None = None,
    calibration: tuple[int, int] = (1981, 2010),
    periodicity: str = "monthly",
    pwm: str = "unbiased",
) -> Data:
    """Standardized Precipitation-Evapotranspiration Index along the last axis.

    D = P - PET (mm), accumulated over ``scale`` steps, standardized per calendar step over ``calibration``:

    * ``"loglogistic"`` (default; Vicente-Serrano et al. 2010): three-parameter log-logistic
      F(D) = [1 + (alpha / (D - gamma))^beta]^-1 fitted by probability-weighted moments, written in Hosking's
      generalized-logistic form (k = -1/beta). ``pwm="unbiased"`` uses unbiased PWMs (R ``SPEI`` >= 1.7,
      SPEIbase, climate_indices ``Distribution.loglogistic``); ``pwm="plotting"`` uses the original
      plotting position F_i = (i - 0.35)/N of Vicente-Serrano et al. (2010).
    * ``"gamma"`` / ``"pearson3"``: climate_indices' SPEI (D + 1000 mm, then the SPI fits).

    SPEI = Phi^-1(F(D)), clipped to [-3.09, 3.09]. Same calibration interface as :func:`spi`.

    References: Vicente-Serrano, Beguería & López-Moreno (2010) J. Climate 23:1696; Beguería et al. (2014);
    Hosking (1996); climate_indices ``indices.spei``.
    """
    if distribution not in SPEI_DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {SPEI_DISTRIBUTIONS}, got {distribution!r}")
    if pwm not in PWM_ESTIMATORS:
        raise ValueError(f"pwm must be one of {PWM_ESTIMATORS}, got {pwm!r}")
    _steps(periodicity)  # validates periodicity early
    precip, pet = harmonize(precip, pet)
    like = first_dataarray(precip, pet)
    p = quantity(precip, "mm", "precipitation", "precip")
    e = quantity(pet, "mm", "pet", "pet")
    if p.shape != e.shape:
        try:
            p, e = (np.asarray(v, dtype=np.float64) for v in np.broadcast_arrays(p, e))
        except ValueError as exc:
            raise ValueError(f"precip shape {p.shape} and pet shape {e.shape} do not broadcast") from exc
    require_time_axis(p, "precip")
    _check_scale(scale)
    lay = _Layout(like, start_year, periodicity, p.shape[-1])
    d = p - e
    if distribution != "loglogistic":
        d = d + SPEI_OFFSET_MM
    folded = lay.fold(rolling_sum(d, scale))
    rows = calibration_rows(lay.start_year, lay.n_years, calibration)
    out = lay.unfold(_standardize(folded, rows, distribution, pwm))
    return wrap_like(out, like, units="1", long_name=f"SPEI-{scale} ({distribution})", references=SPEI_REF,
                     name=f"spei_{scale}")


# ------------------------------------------------------------------------------------------ PET
def _declination(doy: FloatArray) -> FloatArray:
    """FAO-56 eq. 24: delta = 0.409 sin(2 pi J / 365 - 1.39)."""
    return np.asarray(DECLINATION_AMPLITUDE * np.sin(2.0 * np.pi / 365.0 * doy - DECLINATION_PHASE))


def _sunset_angle(lat_rad: FloatArray, decl: FloatArray) -> FloatArray:
    """FAO-56 eq. 25 (clipped for polar day/night): omega_s = arccos(-tan(phi) tan(delta))."""
    return np.asarray(np.arccos(np.clip(-np.tan(lat_rad) * np.tan(decl), -1.0, 1.0)))


def _latitude(latitude_deg: ArrayLike, lead_shape: tuple[int, ...]) -> FloatArray:
    lat = quantity(latitude_deg, "degrees_north", "latitude", "latitude_deg")
    if np.isnan(lat).any():
        raise ValueError("latitude_deg must not be NaN")
    try:
        return np.broadcast_to(lat, lead_shape).astype(np.float64)
    except ValueError as exc:
        raise ValueError(
            f"latitude shape {lat.shape} must broadcast to the leading dims {lead_shape}") from exc


def _monthly_daylight_hours(lat_rad: FloatArray, leap: bool) -> FloatArray:
    """Mean daylight hours N = 24 omega_s / pi (FAO-56 eq. 34) for each month: shape (..., 12)."""
    ndays = 366 if leap else 365
    doy = np.arange(1, ndays + 1, dtype=np.float64)
    hours = 24.0 / np.pi * _sunset_angle(lat_rad[..., None], _declination(doy))
    bounds = np.concatenate([[0], np.cumsum(MONTH_DAYS[leap])])
    return np.stack([hours[..., bounds[m]:bounds[m + 1]].mean(axis=-1) for m in range(12)], axis=-1)


def pet_thornthwaite(temp_c_monthly: ArrayLike, latitude_deg: ArrayLike, start_year: int) -> Data:
    """Thornthwaite (1948) potential evapotranspiration, mm per month, along the last (monthly) axis.

    PET = 16 (N/12) (d/30) (10 T / I)^a, T = monthly mean temperature (T < 0 -> 0), d = days in the month,
    N = mean daylight hours of the month at the latitude (FAO-56 eqs. 24, 25, 34; leap years handled),
    I = sum over the 12 calendar months of (Tm/5)^1.514 with Tm the record-mean temperature of each month,
    a = 6.75e-7 I^3 - 7.71e-5 I^2 + 1.792e-2 I + 0.49239. The series starts in January of ``start_year``;
    ``latitude_deg`` is a scalar or one value per series (leading dims). As climate_indices
    ``eto_thornthwaite``.

    Reference: Thornthwaite (1948) Geogr. Rev. 38:55-94.
    """
    temp_c_monthly = time_last(temp_c_monthly)
    like = first_dataarray(temp_c_monthly)
    t = quantity(temp_c_monthly, "degC", "temperature", "temp_c_monthly")
    require_time_axis(t, "temp_c_monthly")
    n = t.shape[-1]
    lat = np.radians(_latitude(latitude_deg, t.shape[:-1]))
    folded = np.maximum(_fold(t, 12), 0.0)  # NaN stays NaN
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.nansum(folded, axis=-2) / np.sum(~np.isnan(folded), axis=-2)
        heat = np.sum((means / 5.0) ** THORNTHWAITE_I_EXP, axis=-1)[..., None, None]
        c3, c2, c1, c0 = THORNTHWAITE_A
        a = c3 * heat**3 + c2 * heat**2 + c1 * heat + c0
        years = start_year + np.arange(folded.shape[-2])
        leap = np.array([calendar.isleap(int(y)) for y in years], dtype=bool)
        dl = np.where(leap[:, None], _monthly_daylight_hours(lat, True)[..., None, :],
                      _monthly_daylight_hours(lat, False)[..., None, :])
        days = np.where(leap[:, None], MONTH_DAYS[True], MONTH_DAYS[False])
        pet = 16.0 * (dl / 12.0) * (days / 30.0) * (10.0 * folded / heat) ** a
    out = _unfold(pet, n)
    return wrap_like(out, like, units="mm", long_name="Thornthwaite potential evapotranspiration (monthly)",
                     references=THORNTHWAITE_REF, name="pet")


def _dates_doy(dates: Any, like: xr.DataArray | None, n: int) -> FloatArray:
    if dates is None:
        if like is None or not np.issubdtype(like[like.dims[-1]].dtype, np.datetime64):
            raise ValueError("dates is required (datetime64 of each day on the last axis)")
        dates = like[like.dims[-1]].values
    d = np.asarray(dates.values if isinstance(dates, xr.DataArray) else dates)
    if not np.issubdtype(d.dtype, np.datetime64):
        try:
            d = d.astype("datetime64[D]")
        except (TypeError, ValueError) as exc:
            raise ValueError("dates must be datetime64-convertible") from exc
    if d.shape != (n,):
        raise ValueError(f"dates shape {d.shape} must be ({n},)")
    day = d.astype("datetime64[D]")
    doy = (day - day.astype("datetime64[Y]")).astype(np.int64) + 1
    return doy.astype(np.float64)


def extraterrestrial_radiation(latitude_deg: ArrayLike, doy: ArrayLike) -> FloatArray:
    """FAO-56 eq. 21: Ra = (24*60/pi) Gsc dr [ws sin(phi) sin(d) + cos(phi) cos(d) sin(ws)], MJ m-2 d-1,
    dr = 1 + 0.033 cos(2 pi J / 365) (eq. 23), d and ws from eqs. 24-25. Broadcasts latitude x doy."""
    lat = np.radians(as_array(latitude_deg, "latitude_deg"))
    j = as_array(doy, "doy")
    decl = _declination(j)
    ws = _sunset_angle(lat, decl)
    dr = 1.0 + ECCENTRICITY * np.cos(2.0 * np.pi / 365.0 * j)
    return np.asarray(24.0 * 60.0 / np.pi * SOLAR_CONSTANT_MJ * dr
                      * (ws * np.sin(lat) * np.sin(decl) + np.cos(lat) * np.cos(decl) * np.sin(ws)))


def pet_hargreaves(tmin_c: ArrayLike, tmax_c: ArrayLike, latitude_deg: ArrayLike, dates: Any = None) -> Data:
    """Hargreaves (1985) reference evapotranspiration, mm per day, along the last (daily) axis.

    ET0 = 0.0023 (Tmean + 17.8) sqrt(Tmax - Tmin) 0.408 Ra, Tmean = (Tmax + Tmin)/2, Ra from
    :func:`extraterrestrial_radiation` (FAO-56 eq. 21) with J the day of year of ``dates`` (datetime64, one
    per step; taken from a DataArray's time coordinate if omitted). Tmax < Tmin gives NaN.
    ``latitude_deg`` is a scalar or one value per series (leading dims).

    Reference: Hargreaves & Samani (1985) Appl. Eng. Agric. 1:96; FAO-56 (Allen et al. 1998) eq. 52.
    """
    tmin_c, tmax_c = harmonize(tmin_c, tmax_c)
    like = first_dataarray(tmin_c, tmax_c)
    tn = quantity(tmin_c, "degC", "temperature", "tmin_c")
    tx = quantity(tmax_c, "degC", "temperature", "tmax_c")
    if tn.shape != tx.shape:
        raise ValueError(f"tmin_c shape {tn.shape} != tmax_c shape {tx.shape}")
    require_time_axis(tx, "tmax_c")
    doy = _dates_doy(dates, like, tx.shape[-1])
    lat = _latitude(latitude_deg, tx.shape[:-1])[..., None]
    ra = extraterrestrial_radiation(lat, doy)
    with np.errstate(invalid="ignore"):
        rng = tx - tn
        et0 = HARGREAVES_COEF * ((tx + tn) / 2.0 + HARGREAVES_T_OFFSET) * np.sqrt(
            np.where(rng >= 0, rng, np.nan)) * MJ_TO_MM * ra
    return wrap_like(np.asarray(et0), like, units="mm", long_name="Hargreaves reference evapotranspiration",
                     references=HARGREAVES_REF, name="pet")


# ------------------------------------------------------------------------------------------ grades
def drought_grade(index: ArrayLike, kind: str = "spi") -> Data:
    """GB/T 20481-2017 meteorological drought grade: 1 无旱, 2 轻旱, 3 中旱, 4 重旱, 5 特旱 (NaN if missing).

    For SPI/SPEI/MCI: 无旱 > -0.5; 轻旱 (-1.0, -0.5]; 中旱 (-1.5, -1.0]; 重旱 (-2.0, -1.5]; 特旱 <= -2.0.
    For MI (relative moisture index): limits -0.40, -0.65, -0.80, -0.95. ``kind`` in
    :data:`DROUGHT_GRADE_LIMITS`.

    Reference: GB/T 20481-2017 (limits confirmed via 干旱气象 2024 42(6) Table 3).
    """
    try:
        limits = DROUGHT_GRADE_LIMITS[kind]
    except KeyError as exc:
        raise ValueError(f"kind must be one of {sorted(DROUGHT_GRADE_LIMITS)}, got {kind!r}") from exc
    like = first_dataarray(index)
    x = as_array(index, "index")
    if np.isinf(x).any():
        raise ValueError("index contains infinite values (use NaN for missing)")
    grade = np.ones(x.shape)
    with np.errstate(invalid="ignore"):
        for g, lim in enumerate(limits, start=2):
            grade = np.where(x <= lim, float(g), grade)
    grade = np.where(np.isnan(x), np.nan, grade)
    return wrap_like(grade, like, units="1", long_name=f"GB/T 20481-2017 drought grade ({kind})",
                     references=GRADE_REF, name="drought_grade")


# ------------------------------------------------------------------------------------------ MCI
#: GB/T 20481-2017 MCI weights (a, b, c, d) for SPIW60, MI30, SPI90, SPI150. UNCONFIRMED: taken from two
#: third-party implementations, not from the standard's table. Gansu uses the northern/western set.
MCI_WEIGHTS: dict[str, tuple[float, float, float, float]] = {
    "north": (0.3, 0.5, 0.3, 0.2),
    "south": (0.5, 0.6, 0.2, 0.1),
}
#: Seasonal adjustment Ka for Jan..Dec. UNCONFIRMED: the Qinghai "附录H" implementation's table; take
#: Gansu's table from the provincial climate centre before operational use.
MCI_KA_MONTHLY: tuple[float, ...] = (0.0, 0.0, 0.0, 0.6, 1.0, 1.2, 1.2, 1.0, 0.9, 0.4, 0.0, 0.0)
#: SPIW60 decay a in WAP = sum_n a^n P_n. UNCONFIRMED (0.85 in two third-party implementations).
MCI_DECAY = 0.85
#: Windows (days) of the MCI terms.
MCI_WINDOWS = {"spiw": 60, "mi": 30, "spi_short": 90, "spi_long": 150}
#: Class labels of :func:`mci_class` by GB/T 20481-2017 grade.
MCI_CLASS_NAMES = {1: "none", 2: "light", 3: "moderate", 4: "severe", 5: "extreme"}
MCI_REF = ("GB/T 20481-2017 气象干旱等级 (MCI = Ka (a SPIW60 + b MI30 + c SPI90 + d SPI150)); weights, Ka and "
           "the SPIW decay are UNCONFIRMED (third-party implementations)")


def _dates_or_time_axis(dates: Any, like: xr.DataArray | None) -> Any:
    """The dates given, else the time coordinate (last dim) of the DataArray input; numpy input needs dates."""
    if dates is not None:
        return dates
    if like is None:
        raise ValueError("dates is required for numpy input")
    return like[like.dims[-1]].values


def _daily_slots(dates: Any, n: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Year row and 366-day slot (leap-year calendar, Feb 29 = slot 59) of each date; returns the start year."""
    d = np.asarray(dates.values if isinstance(dates, xr.DataArray) else dates).astype("datetime64[D]")
    if d.shape != (n,):
        raise ValueError(f"dates shape {d.shape} must be ({n},)")
    if n > 1 and np.any(np.diff(d).astype(np.int64) <= 0):
        raise ValueError("dates must be strictly increasing")
    years = d.astype("datetime64[Y]").astype(np.int64) + 1970
    doy = (d - d.astype("datetime64[Y]")).astype(np.int64)  # 0-based
    leap = (years % 4 == 0) & ((years % 100 != 0) | (years % 400 == 0))
    slot = np.where(~leap & (doy >= 59), doy + 1, doy)
    y0 = int(years[0]) if n else 0
    return years - y0, slot, y0


def standardize_daily(
    values: ArrayLike,
    dates: Any = None,
    *,
    calibration: tuple[int, int] = (1981, 2010),
    distribution: str = "gamma",
    zeros: str = "classic",
) -> Data:
    """Standardize already-accumulated daily values per calendar day (366-day leap calendar) -> z-scores.

    Each value is placed at (year, day-of-year slot; Feb 29 = slot 59, only filled in leap years), the chosen
    distribution (gamma with zero mass, or pearson3) is fitted per slot over the ``calibration`` years as in
    :func:`spi`, and z = Phi^-1(H) clipped to +-3.09. ``dates``: datetime64 per step (or the DataArray's
    time coordinate). Used for the SPI terms of :func:`mci`.

    References: McKee et al. (1993); climate_indices daily SPI (366-day calendar).
    """
    if distribution not in SPI_DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {SPI_DISTRIBUTIONS}, got {distribution!r}")
    values = time_last(values)
    like = first_dataarray(values)
    x = as_array(values, "values")
    require_time_axis(x, "values")
    dates = _dates_or_time_axis(dates, like)
    yr, slot, y0 = _daily_slots(dates, x.shape[-1])
    n_years = int(yr[-1]) + 1
    folded = np.full((*x.shape[:-1], n_years, 366), np.nan)
    folded[..., yr, slot] = x
    rows = calibration_rows(y0, n_years, calibration)
    z = _standardize(folded, rows, distribution, zeros=zeros)[..., yr, slot]
    return wrap_like(z, like, units="1", long_name=f"standardized daily index ({distribution})",
                     references=SPI_REF, name="z")


def mci(
    precip_daily: ArrayLike,
    pet_daily: ArrayLike,
    dates: Any = None,
    *,
    calibration: tuple[int, int] = (1981, 2010),
    weights: tuple[float, float, float, float] = MCI_WEIGHTS["north"],
    ka_monthly: tuple[float, ...] = MCI_KA_MONTHLY,
    decay: float = MCI_DECAY,
    return_components: bool = False,
    zeros: str = "classic",
    mi: str = "raw",
) -> Any:
    """Meteorological drought composite index MCI of GB/T 20481-2017, daily, along the last axis.

    MCI = Ka (a SPIW60 + b MI30 + c SPI90 + d SPI150), with, for each day t:

    * SPIW60: WAP = sum_{n=0}^{59} decay^n P_t-n, standardized per calendar day like SPI (gamma, zero mass);
    * MI30 = (P30 - PET30) / PET30, the relative moisture index of the last 30 days (NaN if PET30 <= 0);
    * SPI90, SPI150: SPI of the last 90 and 150 days (gamma, per calendar day over ``calibration``);
    * Ka: seasonal coefficient of the month of t (``ka_monthly``, Jan..Dec). Where Ka = 0, MCI = 0.

    UNCONFIRMED against the standard's text (see STANDARDS.md 1.3.1): the weights (default northern set
    0.3/0.5/0.3/0.2), the Ka table (default: a Qinghai implementation's table), the decay 0.85 and the PET
    method (the caller supplies PET). Treat them as configuration, not as the official standard.

    Arid stations (the service's choice, labelled in the climatology summary): ``zeros="center_of_mass"`` scores
    days without rain in the SPI terms at the middle of the zero mass (``SPI_ZERO_HANDLING``), and
    ``mi="standardized"`` adds MI30 as its z-score per calendar day over ``calibration`` (``MCI_MI_MODES``), so in
    the station's own climate MCI is centred like its other terms instead of sitting near b * -1.

    ``return_components=True`` returns a dict with ``mci``, ``spiw60``, ``mi30``, ``spi90``, ``spi150``, ``ka``.
    Grade with :func:`drought_grade` (kind "mci") or :func:`mci_class`.

    Reference: GB/T 20481-2017 气象干旱等级.
    """
    if len(weights) != 4:
        raise ValueError("weights must be (a, b, c, d)")
    if len(ka_monthly) != 12:
        raise ValueError("ka_monthly must have 12 values (Jan..Dec)")
    if not 0.0 < decay < 1.0:
        raise ValueError(f"decay must be in (0, 1), got {decay}")
    if mi not in MCI_MI_MODES:
        raise ValueError(f"mi must be one of {MCI_MI_MODES}, got {mi!r}")
    precip_daily, pet_daily = harmonize(precip_daily, pet_daily)
    like = first_dataarray(precip_daily, pet_daily)
    p = quantity(precip_daily, "mm", "precipitation", "precip_daily")
    e = quantity(pet_daily, "mm", "pet", "pet_daily")
    if p.shape != e.shape:
        raise ValueError(f"precip_daily shape {p.shape} != pet_daily shape {e.shape}")
    require_time_axis(p, "precip_daily")
    dates = _dates_or_time_axis(dates, like)
    d = np.asarray(dates.values if isinstance(dates, xr.DataArray) else dates).astype("datetime64[D]")
    a, b, c, dd = weights
    wap = trailing_weighted_sum_days(p, decay, MCI_WINDOWS["spiw"])
    spiw = as_array(standardize_daily(wap, d, calibration=calibration, zeros=zeros))
    p30 = rolling_sum(p, MCI_WINDOWS["mi"])
    e30 = rolling_sum(e, MCI_WINDOWS["mi"])
    with np.errstate(invalid="ignore", divide="ignore"):
        mi30 = np.where(e30 > 0, (p30 - e30) / e30, np.nan)
    if mi == "standardized":
        mean, std = _daily_mean_std(mi30, d, calibration)
        _, slot, _ = _daily_slots(d, p.shape[-1])
        with np.errstate(invalid="ignore", divide="ignore"):
            mi30 = (mi30 - mean[..., slot]) / std[..., slot]
    spi90 = as_array(standardize_daily(rolling_sum(p, MCI_WINDOWS["spi_short"]), d, calibration=calibration,
                                       zeros=zeros))
    spi150 = as_array(standardize_daily(rolling_sum(p, MCI_WINDOWS["spi_long"]), d, calibration=calibration,
                                        zeros=zeros))
    month = d.astype("datetime64[M]").astype(np.int64) % 12
    ka = np.asarray(ka_monthly, dtype=np.float64)[month]
    value = ka * (a * spiw + b * mi30 + c * spi90 + dd * spi150)
    have_precip = ~np.isnan(rolling_sum(p, MCI_WINDOWS["spi_long"]))
    value = np.where((ka == 0.0) & have_precip, 0.0, value)
    out = wrap_like(value, like, units="1", long_name="meteorological drought composite index (MCI)",
                    references=MCI_REF, name="mci")
    if not return_components:
        return out
    return {"mci": out, "spiw60": spiw, "mi30": mi30, "spi90": spi90, "spi150": spi150,
            "ka": np.broadcast_to(ka, value.shape)}


def _daily_mean_std(values: FloatArray, dates: Any, calibration: tuple[int, int]) -> tuple[FloatArray, FloatArray]:
    """Mean and standard deviation (ddof 1) per 366-day calendar slot over the calibration years, (..., 366)
    each; NaN where a slot has fewer than 2 values or no spread."""
    yr, slot, y0 = _daily_slots(dates, values.shape[-1])
    n_years = int(yr[-1]) + 1
    folded = np.full((*values.shape[:-1], n_years, 366), np.nan)
    folded[..., yr, slot] = values
    cal = folded[..., calibration_rows(y0, n_years, calibration), :]
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(cal, axis=-2)
        std = np.nanstd(cal, axis=-2, ddof=1)
    std = np.where(std > 0, std, np.nan)
    return mean, std


def mi30_fit(precip_daily: ArrayLike, pet_daily: ArrayLike, dates: Any = None, *,
             calibration: tuple[int, int] = (1981, 2010)) -> FloatArray:
    """Mean and standard deviation of MI30 per calendar-day slot over the calibration years, ``(..., 366, 2)``:
    what :func:`mci_from_params` needs to add MI30 standardized (``mi="standardized"``, arid stations)."""
    precip_daily, pet_daily = harmonize(precip_daily, pet_daily)
    like = first_dataarray(precip_daily, pet_daily)
    p = quantity(precip_daily, "mm", "precipitation", "precip_daily")
    e = quantity(pet_daily, "mm", "pet", "pet_daily")
    require_time_axis(p, "precip_daily")
    d = _dates_or_time_axis(dates, like)
    p30, e30 = rolling_sum(p, MCI_WINDOWS["mi"]), rolling_sum(e, MCI_WINDOWS["mi"])
    with np.errstate(invalid="ignore", divide="ignore"):
        mi30 = np.where(e30 > 0, (p30 - e30) / e30, np.nan)
    mean, std = _daily_mean_std(mi30, d, calibration)
    return np.stack([mean, std], axis=-1)


def trailing_weighted_sum_days(precip: FloatArray, decay: float, window: int) -> FloatArray:
    """WAP_t = sum_{n=0}^{window-1} decay^n P_t-n (NaN if any day in the window is missing)."""
    return trailing_weighted_sum(precip, decay ** np.arange(window, dtype=np.float64))


def mci_class(mci_values: ArrayLike) -> Any:
    """MCI class label per GB/T 20481-2017 grade: none (> -0.5), light (-1.0, -0.5], moderate (-1.5, -1.0],
    severe (-2.0, -1.5], extreme (<= -2.0); "" where missing. Same shape/kind as the input (string dtype).

    Reference: GB/T 20481-2017 (limits confirmed via 干旱气象 2024 42(6) Table 3).
    """
    like = first_dataarray(mci_values)
    g = as_array(drought_grade(mci_values, "mci"))
    labels = np.array([""] + [MCI_CLASS_NAMES[k] for k in range(1, 6)], dtype=object)
    idx = np.where(np.isnan(g), 0, g).astype(np.int64)
    out = labels[idx].astype(str)
    if like is None:
        return out
    return xr.DataArray(out, dims=like.dims, coords=like.coords,
                        attrs={"long_name": "MCI drought class", "references": GRADE_REF, "units": "1"})


# ------------------------------------------------------------------------------------------ MCI from parameters
#: The gamma-standardised MCI terms, in the order of :func:`mci_fit`'s ``term`` axis.
MCI_TERMS = ("spiw60", "spi90", "spi150")


def daily_slot(date: Any) -> int:
    """The 366-day calendar slot (0-based, Feb 29 = 59) of one date, as used by :func:`standardize_daily`."""
    _, slot, _ = _daily_slots(np.asarray([np.datetime64(date, "D")]), 1)
    return int(slot[0])


def arid_mci_params(gamma_params: ArrayLike, mi_params: ArrayLike) -> FloatArray:
    """An arid station's MCI parameters for :func:`mci_from_params`: the :func:`mci_fit` gamma terms
    ``(3, 366, 3)`` plus a fourth term (MI30 mean, standard deviation, 1.0) from :func:`mi30_fit` ``(366, 2)``."""
    g = as_array(gamma_params, "gamma_params")
    m = as_array(mi_params, "mi_params")
    fourth = np.concatenate([m, np.ones((*m.shape[:-1], 1))], axis=-1)[..., None, :, :]
    return np.concatenate([g, fourth], axis=-3)


def mci_fit(precip_daily: ArrayLike, dates: Any = None, *, calibration: tuple[int, int] = (1981, 2010),
            decay: float = MCI_DECAY) -> FloatArray:
    """Fit once what :func:`mci` fits on every call: gamma parameters per calendar-day slot of WAP60, P90 and
    P150 over the calibration years. Returns ``(..., 3 terms, 366 slots, 3)`` with (alpha, beta, q), so the
    streaming service scores a new day with :func:`mci_from_params` without refitting history.

    Reference: GB/T 20481-2017 (MCI); Thom (1958) gamma fit as in :func:`spi`.
    """
    precip_daily = time_last(precip_daily)
    like = first_dataarray(precip_daily)
    p = quantity(precip_daily, "mm", "precipitation", "precip_daily")
    require_time_axis(p, "precip_daily")
    dates = _dates_or_time_axis(dates, like)
    yr, slot, y0 = _daily_slots(dates, p.shape[-1])
    n_years = int(yr[-1]) + 1
    rows = calibration_rows(y0, n_years, calibration)
    out = np.full((*p.shape[:-1], len(MCI_TERMS), 366, 3), np.nan)
    accums = (trailing_weighted_sum_days(p, decay, MCI_WINDOWS["spiw"]), rolling_sum(p, MCI_WINDOWS["spi_short"]),
              rolling_sum(p, MCI_WINDOWS["spi_long"]))
    for k, acc in enumerate(accums):
        folded = np.full((*p.shape[:-1], n_years, 366), np.nan)
        folded[..., yr, slot] = acc
        alpha, beta, q = gamma_fit(folded[..., rows, :])
        out[..., k, :, 0], out[..., k, :, 1], out[..., k, :, 2] = alpha, beta, q
    return out


def mci_from_params(precip_150: ArrayLike, pet_30: ArrayLike, month: int, slot: int, params: ArrayLike, *,
                    weights: tuple[float, float, float, float] = MCI_WEIGHTS["north"],
                    ka_monthly: tuple[float, ...] = MCI_KA_MONTHLY, decay: float = MCI_DECAY) -> FloatArray:
    """MCI of one day from the last 150 daily precipitation totals and the last 30 PET values (oldest first,
    the day itself last) and :func:`mci_fit` parameters; vectorised over leading dims (stations).
    Equals :func:`mci` on the same day with the same calibration. NaN when any needed day is missing.

    ``params`` with a fourth term (``arid_mci_params``: MI30 mean, standard deviation and 1.0 per slot) is an
    arid station's: :func:`mci` with ``zeros="center_of_mass"`` and ``mi="standardized"``.

    Reference: GB/T 20481-2017 (weights, Ka and decay UNCONFIRMED, see :func:`mci`).
    """
    p = as_array(precip_150, "precip_150")
    e = as_array(pet_30, "pet_30")
    prm = as_array(params, "params")
    if p.shape[-1] != MCI_WINDOWS["spi_long"] or e.shape[-1] != MCI_WINDOWS["mi"]:
        raise ValueError("precip_150 needs 150 days and pet_30 needs 30 days on the last axis")
    if not 1 <= month <= 12 or not 0 <= slot < 366:
        raise ValueError("month 1..12 and slot 0..365")
    w = decay ** np.arange(MCI_WINDOWS["spiw"], dtype=np.float64)
    wap = np.sum(p[..., ::-1][..., : MCI_WINDOWS["spiw"]] * w, axis=-1)
    p90 = np.sum(p[..., -MCI_WINDOWS["spi_short"]:], axis=-1)
    p150 = np.sum(p, axis=-1)
    arid = prm.shape[-3] == 4
    zeros = "center_of_mass" if arid else "classic"
    zs = []
    for k, acc in enumerate((wap, p90, p150)):
        a, b, q = (prm[..., k, slot, j] for j in range(3))
        z = gamma_transform(np.asarray(acc, dtype=np.float64)[..., None, None], np.asarray(a)[..., None],
                            np.asarray(b)[..., None], np.asarray(q)[..., None], zeros=zeros)[..., 0, 0]
        zs.append(z)
    p30 = np.sum(p[..., -MCI_WINDOWS["mi"]:], axis=-1)
    e30 = np.sum(e, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mi30 = np.where(e30 > 0, (p30 - e30) / e30, np.nan)
        if arid:
            mi30 = (mi30 - prm[..., 3, slot, 0]) / prm[..., 3, slot, 1]
    a_, b_, c_, d_ = weights
    ka = float(ka_monthly[month - 1])
    value = ka * (a_ * zs[0] + b_ * mi30 + c_ * zs[1] + d_ * zs[2])
    if ka == 0.0:
        value = np.where(np.isnan(p150), np.nan, 0.0)
    return np.asarray(value, dtype=np.float64)
