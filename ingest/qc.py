"""Quality control of station observations, WMO style, before grading.

The checks follow the basic quality-control sequence of the WMO guides -- WMO-No. 8 (Guide to Instruments and
Methods of Observation, Vol. V "Quality assurance and management of observing systems", 2023 ed.; Part III
in the 2008/2014 editions) and WMO-No. 1269 (Guidelines on Surface Station Data
Quality Control and Quality Assurance for Climate Applications, 2021): gross-error (plausible-value) check,
climatological range check, time consistency (step and persistence) checks, internal consistency checks --
and the individual tests of the GHCN-Daily QC system (Durre, I., M. J. Menne, B. E. Gleason, T. G. Houston
and R. S. Vose, 2010: Comprehensive automated quality assurance of daily surface observations. J. Appl.
Meteor. Climatol. 49, 1615-1633): world-record exceedance, "streak"/identical-value runs, spike/dip
(temporal consistency) and internal consistency (TMIN <= TMAX) tests, extended here by a statistical
outlier model per station. The numeric limits are in the tables below (chosen for Gansu's continental,
high-altitude climate and checked against the real Beijing ISD-Lite / GHCN-Daily files of the test data);
they are module-level data kept apart from the code that applies them.

Outcomes (:class:`QCResult`):

``hard_fail``
    the report is rejected (goes to ``obs.rejected`` with the reason): no station id, unreadable time, an
    element that is not a finite number, or a value beyond :data:`HARD_LIMITS` (beyond any value measured on
    Earth, cf. Durre et al. 2010 "world record exceedance").
``flags`` (element -> reason)
    the value is kept and published with the flag in ``Observation.qc``; grading must not issue a warning on
    a flagged value alone. Flags come from: soft range (:data:`RANGE_LIMITS`, shifted with station elevation:
    :data:`RANGE_LAPSE_PER_KM` for temperatures, barometric lower bound for pressure), step (jump)
    (:data:`STEP_LIMITS`), persistence (:data:`PERSISTENCE`), internal consistency (tmin <= tmax, dew point
    <= air temperature + :data:`DEWPOINT_TOLERANCE_C`, gust >= mean wind, RH agreeing with T/Td) and the
    anomaly model.

Step check: a value is compared with the previous report of the same element (time-ordered per station);
the allowed change grows with the gap as ``min(limit * sqrt(gap / ref), cap)`` and the check is skipped
after ``max_gap_h``. A jump is flagged unless it is the return from a flagged jump (a spike flags one value,
not two; a level shift flags its first value only). Persistence: a value identical to the previous ``N - 1``
reports of that element is flagged (``N`` per element; calm wind, zero precipitation and saturated humidity
are ignored). Reports not newer than the station's last report (duplicates, out of order) skip both checks
and do not change the context.

Anomaly model (:func:`fit_anomaly_model`): per station, a harmonic climatology (annual + diurnal harmonics,
least squares, numpy) of each element, and on the residuals a robust covariance model
(``sklearn.covariance.EllipticEnvelope`` = Minimum Covariance Determinant, Rousseeuw & Van Driessen 1999)
for the feature sets (air temperature, dew point) of sub-daily reports and (tmax, tmin) of daily ones -- the
joint residual captures an unusual diurnal range. A report whose squared Mahalanobis distance exceeds the
envelope's threshold (fitted with ``contamination`` = 0.1 %, floored at the chi-square 0.9999 quantile)
flags the element with the largest standardised residual. Note that a statistical outlier can be real
weather (a record heat day is rare by definition): an ``anomaly`` flag, like every flag, is meant to stop a
*single* value from triggering a warning, not to hide it -- grading may accept it when neighbouring
stations or the forecast corroborate it. Scoring uses the fitted location/precision in numpy (the same
formula as ``EllipticEnvelope.mahalanobis``) so a batch is scored in one vectorised pass. Models are saved
with joblib (one file per station, pickles: load only from your own climatology directory).

Context (per station, plain dicts/lists so that it can live in a faust table and round-trip through JSON)::

    {station_id: {"t": last_time_epoch_s,
                  "e": {element: [last_value, last_time_s, previous_value, previous_time_s, last_jumped, run]}}}

:func:`check_batch` is vectorised with numpy across the batch (all stations at once); ``QualityControl.check``
is the same code on a batch of one, so both give identical results.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from warning.records import OBSERVATION_ELEMENTS, Observation

__all__ = [
    "ELEMENTS",
    "HARD_LIMITS",
    "PERSISTENCE",
    "RANGE_LIMITS",
    "SMALL_BATCH",
    "STEP_LIMITS",
    "AnomalyModel",
    "QCResult",
    "QualityControl",
    "check_batch",
    "fit_anomaly_model",
    "fit_anomaly_models",
    "load_models",
    "save_models",
]

ELEMENTS: tuple[str, ...] = tuple(OBSERVATION_ELEMENTS)

# --------------------------------------------------------------------------------------------- tables
#: Hard limits: beyond anything measured on Earth (reject). World records: -89.2 degC (Vostok), +56.7 degC
#: (Death Valley); RH above 110 % or a dew point above 40 degC are instrument errors, not weather.
HARD_LIMITS: dict[str, tuple[float, float]] = {
    "air_temp_c": (-90.0, 60.0),
    "tmax_c": (-90.0, 60.0),
    "tmin_c": (-90.0, 60.0),
    "ground_tmin_c": (-90.0, 90.0),
    "rh_pct": (0.0, 110.0),
    "dewpoint_c": (-100.0, 40.0),
    "precip_mm": (0.0, 2000.0),  # per report; see also the Jennings envelope below
    "precip_period_h": (0.0, 744.0),
    "wind_ms": (0.0, 120.0),
    "gust_ms": (0.0, 150.0),
    "visibility_m": (0.0, 100000.0),
    "pressure_hpa": (300.0, 1100.0),
}
#: Soft (climatological) range at sea level, flagged outside. Temperatures are shifted with elevation by
#: RANGE_LAPSE_PER_KM (upper bound only: cold pools make low minima possible at any height). The bounds are
#: generous on purpose: a flag keeps a value from triggering a warning on its own, so a real record heat
#: must not be flagged. 52 degC at sea level (China's records, Turpan basin, are ~50-52 degC near sea level)
#: minus 3 degC/km gives ~48 degC at Gansu's desert stations (1100-1500 m) and ~42 degC at 3400 m.
RANGE_LIMITS: dict[str, tuple[float, float]] = {
    "air_temp_c": (-50.0, 52.0),
    "tmax_c": (-45.0, 52.0),
    "tmin_c": (-50.0, 38.0),
    "ground_tmin_c": (-55.0, 40.0),
    "rh_pct": (1.0, 100.0),
    "dewpoint_c": (-60.0, 32.0),
    "precip_mm": (0.0, 2000.0),  # replaced by the duration-dependent bound below
    "precip_period_h": (0.0, 744.0),
    "wind_ms": (0.0, 40.0),
    "gust_ms": (0.0, 60.0),
    "visibility_m": (0.0, 80000.0),
    "pressure_hpa": (870.0, 1085.0),  # sea-level extremes; the lower bound follows the station's elevation
}
#: degC per km of station elevation added to the upper range bound.
RANGE_LAPSE_PER_KM: dict[str, float] = {
    "air_temp_c": -3.0, "tmax_c": -3.0, "tmin_c": -3.0, "ground_tmin_c": -3.0, "dewpoint_c": -3.0,
}
#: Precipitation per report: the world-record point-rainfall envelope R = 422 mm * D[h]^0.475 (Jennings 1950,
#: updated by Paulhus 1965) is the hard limit; a quarter of it (105 mm in 1 h, 478 mm in 24 h) is flagged.
JENNINGS_MM = 422.0
JENNINGS_EXP = 0.475
PRECIP_SOFT_FRACTION = 0.25
DEFAULT_PRECIP_PERIOD_H = 24.0
#: Step limits: element -> (limit at the reference gap, reference gap h, cap, max gap h). Beijing 2017
#: hourly: 99.9 % of hourly temperature changes < 9 degC, pressure (3-hourly SLP) < 6 hPa.
STEP_LIMITS: dict[str, tuple[float, float, float, float]] = {
    "air_temp_c": (10.0, 1.0, 25.0, 12.0),
    "dewpoint_c": (10.0, 1.0, 25.0, 12.0),
    "rh_pct": (50.0, 1.0, 80.0, 6.0),
    "pressure_hpa": (6.0, 1.0, 20.0, 12.0),
    "wind_ms": (20.0, 1.0, 30.0, 6.0),
    "gust_ms": (25.0, 1.0, 40.0, 6.0),
    "tmax_c": (25.0, 24.0, 30.0, 72.0),  # daily values: day-to-day change (GHCN-D spike/dip tests)
    "tmin_c": (25.0, 24.0, 30.0, 72.0),
    "ground_tmin_c": (25.0, 24.0, 30.0, 72.0),
}
#: Persistence: element -> (N identical consecutive reports flagged, values ignored). Beijing 2017 hourly:
#: longest identical runs are 5 (temperature), 7 (dew point), 16 (wind, integer m/s). Calm, dry, saturated
#: and trace-precipitation values repeat naturally and are ignored.
PERSISTENCE: dict[str, tuple[int, tuple[float, ...]]] = {
    "air_temp_c": (8, ()),
    "dewpoint_c": (10, ()),
    "rh_pct": (10, (100.0,)),
    "pressure_hpa": (8, ()),
    "wind_ms": (24, (0.0,)),
    "gust_ms": (24, (0.0,)),
    "tmax_c": (5, ()),
    "tmin_c": (5, ()),
    "ground_tmin_c": (5, ()),
    "precip_mm": (8, (0.0, 0.1, 0.2)),
}
#: Batches up to this size go through the scalar implementation (identical results, less overhead).
SMALL_BATCH = 16
#: Lowest anomaly threshold: chi-square quantile of the squared Mahalanobis distance (k = number of features).
CHI2_FLOOR = 0.9999
DEWPOINT_TOLERANCE_C = 0.5
GUST_TOLERANCE_MS = 0.5
RH_TOLERANCE_PCT = 10.0
MINMAX_TOLERANCE_C = 0.0

#: Standard atmosphere (ICAO): p(h)/p0 = (1 - 2.25577e-5 h)^5.25588.
def _pressure_ratio(elev_m: np.ndarray) -> np.ndarray:
    return np.power(np.clip(1.0 - 2.25577e-5 * elev_m, 0.05, None), 5.25588)


# --------------------------------------------------------------------------------------------- result
@dataclass(slots=True)
class QCResult:
    """``flags``: element -> reason (kept, flagged); ``hard_fail``: reason to reject the report, else None."""

    flags: dict[str, str] = field(default_factory=dict)
    hard_fail: str | None = None

    @property
    def ok(self) -> bool:
        """No flag and not rejected."""
        return self.hard_fail is None and not self.flags

    def apply_to(self, obs: Observation) -> Observation:
        """Write the flags into ``obs.qc`` (``"qc: <reason>"``, joined to an existing note with '; ')."""
        for elem, reason in self.flags.items():
            old = obs.qc.get(elem)
            note = f"qc: {reason}"
            obs.qc[elem] = f"{old}; {note}" if old else note
        return obs


def _add(flags: dict[str, str], elem: str, reason: str) -> None:
    old = flags.get(elem)
    flags[elem] = f"{old}; {reason}" if old else reason


# --------------------------------------------------------------------------------------------- input
_ISO_FAST = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def _as_dict(o: Any) -> Mapping[str, Any]:
    if isinstance(o, Mapping):
        return o
    if isinstance(o, Observation):
        return {name: getattr(o, name) for name in ("station_id", "time", *ELEMENTS)}
    return {}


def _parse_time(v: Any) -> float:
    """Epoch seconds (UTC) or NaN."""
    if not isinstance(v, str):
        return math.nan
    try:
        t = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        return math.nan
    if t.tzinfo is None:
        return math.nan
    return t.timestamp()


def _times(raw: list[Any]) -> np.ndarray:
    """Epoch seconds per report (NaN where unreadable); numpy's parser on the common ``...Z`` form."""
    if raw and all(isinstance(v, str) and len(v) == 20 and _ISO_FAST.fullmatch(v) for v in raw):
        try:
            arr = np.array([v[:-1] for v in raw], dtype="datetime64[s]")
            return arr.astype("int64").astype("float64")
        except ValueError:
            pass
    return np.array([_parse_time(v) for v in raw], dtype="float64")


_PLAIN_TYPES = frozenset({float, int, type(None)})


def _column(rows: Sequence[Mapping[str, Any]], name: str) -> tuple[np.ndarray, np.ndarray]:
    """(values with NaN for missing, bad-mask for present-but-not-a-finite-number); same rules as _number."""
    col = [r.get(name) for r in rows]
    if _PLAIN_TYPES.issuperset(map(type, col)):  # plain floats/ints/None: one numpy conversion
        try:
            arr = np.array([math.nan if v is None else v for v in col], dtype="float64")
        except OverflowError:
            pass
        else:
            nonfinite = ~np.isfinite(arr)
            if not nonfinite.any():
                return arr, np.zeros(len(col), dtype=bool)
            bad = nonfinite & np.array([v is not None for v in col])
            return arr, bad
    pairs = [_number(v) for v in col]
    return (np.array([p[0] for p in pairs], dtype="float64"), np.array([p[1] for p in pairs], dtype=bool))


# --------------------------------------------------------------------------------------------- anomaly model
_FEATURE_SETS: dict[str, tuple[tuple[str, ...], ...]] = {
    "subdaily": (("air_temp_c", "dewpoint_c"), ("air_temp_c",)),
    "daily": (("tmax_c", "tmin_c"), ("tmax_c",), ("tmin_c",)),
}
_YEAR_S = 365.2425 * 86400.0


def _design(kind: str, t: np.ndarray) -> np.ndarray:
    """Harmonic regressors: annual (x2, x3 for daily) and, for sub-daily data, diurnal (x2) and their mix."""
    a = 2 * np.pi * np.mod(t, _YEAR_S) / _YEAR_S
    cols = [np.ones_like(a), np.cos(a), np.sin(a), np.cos(2 * a), np.sin(2 * a)]
    if kind == "daily":
        cols += [np.cos(3 * a), np.sin(3 * a)]
    else:
        h = 2 * np.pi * np.mod(t, 86400.0) / 86400.0
        ch, sh = np.cos(h), np.sin(h)
        cols += [ch, sh, np.cos(2 * h), np.sin(2 * h), ch * np.cos(a), ch * np.sin(a), sh * np.cos(a),
                 sh * np.sin(a)]
    return np.stack(cols, axis=-1)


@dataclass
class FeatureModel:
    """Harmonic climatology + robust covariance of the residuals for one feature set."""

    kind: str
    elements: tuple[str, ...]
    coef: np.ndarray  # (n_regressors, n_elements)
    location: np.ndarray  # (k,)
    precision: np.ndarray  # (k, k)
    scale: np.ndarray  # (k,) robust standard deviation of each residual
    threshold: float  # squared Mahalanobis distance above which a report is flagged
    n_train: int
    estimator: Any = None  # the fitted sklearn EllipticEnvelope (kept for inspection / reuse)


@dataclass
class AnomalyModel:
    """All feature-set models of one station."""

    station_id: str
    models: dict[tuple[str, ...], FeatureModel]
    sklearn_version: str = ""
    fitted_at: str = ""

    def describe(self) -> dict[str, Any]:
        return {"station_id": self.station_id, "sklearn": self.sklearn_version,
                "models": {",".join(k): {"n_train": m.n_train, "threshold": round(m.threshold, 3),
                                         "scale": [round(float(s), 3) for s in m.scale]}
                           for k, m in self.models.items()}}


def fit_anomaly_model(
    history: Iterable[Observation | Mapping[str, Any]],
    *,
    station_id: str | None = None,
    contamination: float = 0.001,
    max_samples: int = 3000,
    min_samples: int = 200,
    random_state: int = 0,
) -> AnomalyModel:
    """Fit the anomaly model of one station from its history (Observations or dicts; one station).

    Reports failing the hard limits are left out. Each feature set with at least ``min_samples`` complete
    reports gets a model; the robust covariance is fitted on at most ``max_samples`` of them (random,
    seeded). Raises ValueError if no feature set has enough data.
    """
    import sklearn
    from scipy.stats import chi2
    from sklearn.covariance import EllipticEnvelope

    rows = [_as_dict(o) for o in history]
    if station_id is None:
        ids = {str(r.get("station_id")) for r in rows if r.get("station_id") is not None}
        if len(ids) > 1:
            raise ValueError(f"history holds several stations ({sorted(ids)[:5]}); use fit_anomaly_models")
        station_id = next(iter(ids), "?")
    t = _times([r.get("time") for r in rows])
    cols = {e: _column(rows, e)[0] for kind in _FEATURE_SETS.values() for fs in kind for e in fs}
    for e, arr in cols.items():
        lo, hi = HARD_LIMITS[e]
        arr[(arr < lo) | (arr > hi)] = np.nan
    rng = np.random.default_rng(random_state)
    models: dict[tuple[str, ...], FeatureModel] = {}
    for kind, sets in _FEATURE_SETS.items():
        for fs in sets:
            ok = np.isfinite(t)
            for e in fs:
                ok &= np.isfinite(cols[e])
            n = int(ok.sum())
            if n < min_samples:
                continue
            x = _design(kind, t[ok])
            y = np.stack([cols[e][ok] for e in fs], axis=-1)
            coef, *_ = np.linalg.lstsq(x, y, rcond=None)
            resid = y - x @ coef
            resid_fit = resid[rng.choice(n, max_samples, replace=False)] if n > max_samples else resid
            env = EllipticEnvelope(contamination=contamination, random_state=random_state).fit(resid_fit)
            thr = max(float(-env.offset_), float(chi2.ppf(CHI2_FLOOR, len(fs))))
            cov = np.atleast_2d(env.covariance_)
            models[fs] = FeatureModel(kind=kind, elements=fs, coef=coef, location=np.asarray(env.location_),
                                      precision=np.asarray(env.precision_), scale=np.sqrt(np.diag(cov)),
                                      threshold=thr, n_train=n, estimator=env)
    if not models:
        raise ValueError(f"station {station_id}: not enough history for any anomaly model (< {min_samples} reports)")
    return AnomalyModel(station_id=station_id, models=models, sklearn_version=sklearn.__version__,
                        fitted_at=datetime.now().astimezone().isoformat(timespec="seconds"))


def fit_anomaly_models(history: Iterable[Observation | Mapping[str, Any]], **kw: Any) -> dict[str, AnomalyModel]:
    """One model per station present in ``history`` (stations with too little data are left out)."""
    by_station: dict[str, list[Mapping[str, Any]]] = {}
    for o in history:
        d = _as_dict(o)
        by_station.setdefault(str(d.get("station_id")), []).append(d)
    out: dict[str, AnomalyModel] = {}
    for sid, rows in by_station.items():
        try:
            out[sid] = fit_anomaly_model(rows, station_id=sid, **kw)
        except ValueError:
            continue
    return out


_MODEL_FILE = "qc_anomaly_{}.joblib"
_MANIFEST = "qc_anomaly_models.json"


def save_models(models: Mapping[str, AnomalyModel], directory: str | os.PathLike[str]) -> list[Path]:
    """Write one joblib file per station plus a JSON manifest into ``directory`` (created)."""
    import joblib

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for sid, m in models.items():
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", sid)
        p = d / _MODEL_FILE.format(safe)
        joblib.dump(m, p, compress=3)
        paths.append(p)
    manifest = {sid: {"file": p.name, **models[sid].describe()} for sid, p in zip(models, paths, strict=True)}
    (d / _MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")
    return paths


def load_models(directory: str | os.PathLike[str]) -> dict[str, AnomalyModel]:
    """Models written by :func:`save_models` (joblib = pickle: only load a directory you produced)."""
    import joblib

    d = Path(directory)
    mf = d / _MANIFEST
    if not mf.is_file():
        return {}
    manifest = json.loads(mf.read_text(encoding="utf-8"))
    out: dict[str, AnomalyModel] = {}
    for sid, info in manifest.items():
        m = joblib.load(d / info["file"])
        if not isinstance(m, AnomalyModel):
            raise ValueError(f"{info['file']}: not a QC anomaly model")
        out[sid] = m
    return out


# --------------------------------------------------------------------------------------------- the checks
class QualityControl:
    """QC with per-station rolling context (plain dicts, see the module doc), station elevations and models.

    ``elevations``: station_id -> metres (default: the station registry; unknown stations count as 0 m).
    """

    def __init__(
        self,
        *,
        elevations: Mapping[str, float] | None = None,
        models: Mapping[str, AnomalyModel] | None = None,
        context: MutableMapping[str, Any] | None = None,
    ) -> None:
        if elevations is None:
            elevations = _registry_elevations()
        self.elevations: dict[str, float] = dict(elevations)
        self.models: dict[str, AnomalyModel] = dict(models or {})
        self.context: MutableMapping[str, Any] = context if context is not None else {}

    def check(self, obs: Observation | Mapping[str, Any]) -> QCResult:
        """QC one report and update the context (same code path as :meth:`check_batch`)."""
        return check_batch([obs], self)[0]

    def check_batch(self, batch: Sequence[Observation | Mapping[str, Any]]) -> list[QCResult]:
        return check_batch(batch, self)

    def fit(self, history: Iterable[Observation | Mapping[str, Any]], **kw: Any) -> dict[str, AnomalyModel]:
        fitted = fit_anomaly_models(history, **kw)
        self.models.update(fitted)
        return fitted

    def save_models(self, directory: str | os.PathLike[str]) -> list[Path]:
        return save_models(self.models, directory)

    def load_models(self, directory: str | os.PathLike[str]) -> dict[str, AnomalyModel]:
        loaded = load_models(directory)
        self.models.update(loaded)
        return loaded


def _registry_elevations() -> dict[str, float]:
    try:
        from warning.regions import StationRegistry

        return {s.station_id: float(s.elevation_m) for s in StationRegistry.load()}
    except Exception:  # the registry is a convenience; QC works without it (elevation 0 m)
        return {}


def check_batch(
    batch: Sequence[Observation | Mapping[str, Any]],
    context: QualityControl | MutableMapping[str, Any] | None = None,
    *,
    small_batch: int = SMALL_BATCH,
) -> list[QCResult]:
    """QC a batch (reports of any stations, each station's reports in time order); update the context.

    ``context`` is a :class:`QualityControl` (state, elevations, models) or just the state dict (then
    elevation 0 m and no anomaly model). Never raises on bad input: unusable reports come back with
    ``hard_fail``. Batches of at most ``small_batch`` reports run through the scalar implementation.
    """
    if isinstance(context, QualityControl):
        state, elevations, models = context.context, context.elevations, context.models
    else:
        state = context if context is not None else {}
        elevations, models = {}, {}
    n = len(batch)
    results = [QCResult() for _ in range(n)]
    if n == 0:
        return results
    rows = [_as_dict(o) for o in batch]
    if n <= small_batch:  # numpy's per-call overhead dominates tiny batches: same checks, scalar code
        for i, r in enumerate(rows):
            _check_one(r, results[i], state, elevations, models)
        return results
    hard: list[str | None] = [None] * n

    # identity and time
    sids: list[str] = []
    for i, r in enumerate(rows):
        sid = r.get("station_id")
        if isinstance(sid, int) and not isinstance(sid, bool):
            sid = str(sid)
        if not isinstance(sid, str) or not sid.strip():
            hard[i] = "station_id: missing or not a string"
            sids.append("")
        else:
            sids.append(sid.strip())
    t = _times([r.get("time") for r in rows])
    for i in np.flatnonzero(~np.isfinite(t)).tolist():
        hard[i] = hard[i] or "time: missing or not an ISO-8601 time with UTC offset"

    # values, hard limits
    vals: dict[str, np.ndarray] = {}
    for e in ELEMENTS:
        arr, bad = _column(rows, e)
        lo, hi = HARD_LIMITS[e]
        with np.errstate(invalid="ignore"):
            out = (arr < lo) | (arr > hi)
        for i in np.flatnonzero(bad).tolist():
            hard[i] = hard[i] or f"{e}: not a finite number ({str(rows[i].get(e))[:20]!r})"
        for i in np.flatnonzero(out).tolist():
            hard[i] = hard[i] or f"{e}: {arr[i]:g} beyond the physical limits [{lo:g}, {hi:g}]"
        vals[e] = arr
    period = vals["precip_period_h"]
    pr = vals["precip_mm"]
    dur = np.where(np.isfinite(period) & (period > 0), period, DEFAULT_PRECIP_PERIOD_H)
    envelope = JENNINGS_MM * np.power(np.maximum(dur, 1.0 / 60.0), JENNINGS_EXP)
    with np.errstate(invalid="ignore"):
        over = pr > envelope
    for i in np.flatnonzero(over).tolist():
        hard[i] = hard[i] or f"precip_mm: {pr[i]:g} mm above the world-record envelope ({envelope[i]:.0f} mm " \
                             f"in {dur[i]:g} h)"
    valid = np.array([h is None for h in hard])
    for i in np.flatnonzero(~valid).tolist():
        results[i].hard_fail = hard[i]
    flags: list[dict[str, str]] = [res.flags for res in results]

    # station grouping (stable: arrival order kept within a station)
    uniq, inv = np.unique(np.array(sids, dtype=object), return_inverse=True)
    uniq_list = [str(u) for u in uniq]
    elev_u = np.array([float(elevations.get(s, 0.0) or 0.0) for s in uniq_list])
    elev = elev_u[inv] / 1000.0  # km

    # soft range
    for e, (lo, hi) in RANGE_LIMITS.items():
        if e in ("precip_mm", "precip_period_h"):
            continue
        x = vals[e]
        if e == "pressure_hpa":  # station-level or sea-level pressure: lower bound follows the elevation
            lo_a = lo * _pressure_ratio(elev * 1000.0) - 10.0
            hi_a = np.full(n, hi)
        else:
            lo_a = np.full(n, lo)
            hi_a = hi + RANGE_LAPSE_PER_KM.get(e, 0.0) * elev
        with np.errstate(invalid="ignore"):
            bad_lo, bad_hi = valid & (x < lo_a), valid & (x > hi_a)
        for i in np.flatnonzero(bad_lo | bad_hi).tolist():
            _add(flags[i], e, f"range: {x[i]:g} outside [{lo_a[i]:.1f}, {hi_a[i]:.1f}]")
    with np.errstate(invalid="ignore"):
        soft_pr = valid & (pr > PRECIP_SOFT_FRACTION * envelope)
    for i in np.flatnonzero(soft_pr).tolist():
        soft = PRECIP_SOFT_FRACTION * envelope[i]
        _add(flags[i], "precip_mm", f"range: {pr[i]:g} mm > {soft:.0f} mm in {dur[i]:g} h")

    # internal consistency
    with np.errstate(invalid="ignore"):
        tt, td, tx, tn = vals["air_temp_c"], vals["dewpoint_c"], vals["tmax_c"], vals["tmin_c"]
        for i in np.flatnonzero(valid & (tn > tx + MINMAX_TOLERANCE_C)).tolist():
            _add(flags[i], "tmin_c", f"consistency: tmin {tn[i]:g} > tmax {tx[i]:g}")
            _add(flags[i], "tmax_c", f"consistency: tmax {tx[i]:g} < tmin {tn[i]:g}")
        for i in np.flatnonzero(valid & (td > tt + DEWPOINT_TOLERANCE_C)).tolist():
            _add(flags[i], "dewpoint_c", f"consistency: dew point {td[i]:g} > air temperature {tt[i]:g}")
        w, g = vals["wind_ms"], vals["gust_ms"]
        for i in np.flatnonzero(valid & (g < w - GUST_TOLERANCE_MS)).tolist():
            _add(flags[i], "gust_ms", f"consistency: gust {g[i]:g} < mean wind {w[i]:g}")
        rh = vals["rh_pct"]
        a, b = 17.625, 243.04  # Magnus, Alduchov & Eskridge (1996), as ingest.formats.rh_from_dewpoint
        rh_calc = 100.0 * np.exp(a * td / (b + td) - a * tt / (b + tt))
        for i in np.flatnonzero(valid & (np.abs(rh - rh_calc) > RH_TOLERANCE_PCT)).tolist():
            _add(flags[i], "rh_pct", f"consistency: RH {rh[i]:g} % vs {rh_calc[i]:.0f} % from T/Td")

    # time order per station: reports not newer than the station's previous one skip step/persistence
    order = np.argsort(inv, kind="stable")
    g_sorted = inv[order]
    first_in_group = np.ones(n, dtype=bool)
    first_in_group[1:] = g_sorted[1:] != g_sorted[:-1]
    ts = t[order]
    valid_s = valid[order]
    ctx_t = np.array([_ctx_time(state.get(s)) for s in uniq_list])
    prev_max = _prev_max(g_sorted, first_in_group, np.where(valid_s, ts, np.nan), ctx_t)
    fresh_s = valid_s & (ts > prev_max)

    states = {gi: _station_state(state, uniq_list[gi]) for gi in set(g_sorted[fresh_s].tolist())}
    for e in ELEMENTS:
        if e not in STEP_LIMITS and e not in PERSISTENCE:
            continue
        xs = vals[e][order]
        use = fresh_s & np.isfinite(xs)
        if not use.any():
            continue
        idx = np.flatnonzero(use)  # positions in sorted order
        _series_checks(e, idx, xs[idx], ts[idx], g_sorted[idx], states, order, flags)

    # context times (fresh times increase within a station, so the last one is the newest)
    for gi, tv in dict(zip(g_sorted[fresh_s].tolist(), ts[fresh_s].tolist(), strict=True)).items():
        states[gi]["t"] = float(tv)

    # anomaly model
    if models:
        _anomaly(models, uniq_list, inv, t, vals, valid, flags)
    return results


_OFF = 1 << 39  # epoch seconds are shifted into [1, 2^40) inside one station's key range
_GROUP = 1 << 41


def _prev_max(g: np.ndarray, first: np.ndarray, t: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """Per position (stations contiguous): max of the station's context time and its earlier times; -inf if none.

    One cumulative maximum over int64 keys ``group * 2^41 + 2^39 + t`` (groups never overlap)."""
    def key(v: np.ndarray) -> np.ndarray:
        ok = np.isfinite(v)
        k = np.where(ok, np.clip(np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0), -_OFF + 2, _OFF - 2), -_OFF + 1)
        return (np.floor(k) + _OFF).astype("int64")

    gk = g.astype("int64") * _GROUP
    k = gk + key(t)
    seed_k = gk + key(seed[g])
    prefix = np.maximum.accumulate(k)
    prev = np.empty_like(k)
    prev[0] = seed_k[0]
    prev[1:] = np.where(first[1:], seed_k[1:], np.maximum(prefix[:-1], seed_k[1:]))
    out = (prev - gk - _OFF).astype("float64")
    return np.where(out <= -_OFF + 1, -np.inf, out)


def _station_state(state: MutableMapping[str, Any], sid: str) -> dict[str, Any]:
    st = state.get(sid)
    if not isinstance(st, dict):
        st = {"t": None, "e": {}}
        state[sid] = st
    if not isinstance(st.get("e"), dict):
        st["e"] = {}
    return st


def _ctx_time(st: Any) -> float:
    try:
        v = st.get("t") if isinstance(st, Mapping) else None
        return float(v) if v is not None else -np.inf
    except (TypeError, ValueError):
        return -np.inf


_NO_CTX = (math.nan, math.nan, math.nan, math.nan, 0.0, 0.0)


def _ctx_values(st: Any, e: str) -> tuple[float, float, float, float, float, float]:
    """(last value, last time, previous value, previous time, last jumped 0/1, run) of an element; NaN/0 if none."""
    try:
        v = st["e"][e]
    except (KeyError, TypeError, IndexError):
        return _NO_CTX
    if not isinstance(v, list | tuple) or len(v) != 6:
        return _NO_CTX
    if type(v[0]) is float and type(v[1]) is float and type(v[4]) is int and type(v[5]) is int:  # as written
        c, d = v[2], v[3]
        return (v[0], v[1], math.nan if c is None else _f(c), math.nan if d is None else _f(d),
                1.0 if v[4] > 0 else 0.0, float(v[5]))
    jumped = 1.0 if _f(v[4]) > 0 else 0.0
    run = _f(v[5])
    return _f(v[0]), _f(v[1]), _f(v[2]), _f(v[3]), jumped, run if math.isfinite(run) else 0.0


def _step_limit(e: str, dt_h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lim, ref, cap, max_gap = STEP_LIMITS[e]
    allowed = np.minimum(lim * np.sqrt(np.maximum(dt_h, ref) / ref), cap)
    checked = (dt_h > 0) & (dt_h <= max_gap)
    return allowed, checked


def _series_checks(e: str, idx: np.ndarray, x: np.ndarray, t: np.ndarray, g: np.ndarray,
                   states: dict[int, dict[str, Any]], order: np.ndarray, flags: list[dict[str, str]]) -> None:
    m = x.size
    first = np.ones(m, dtype=bool)
    first[1:] = g[1:] != g[:-1]
    last = np.ones(m, dtype=bool)
    last[:-1] = g[1:] != g[:-1]
    second = np.zeros(m, dtype=bool)
    second[1:] = first[:-1] & ~first[1:]
    # context of each station's first report: last value/time, previous value/time, jumped, run length
    fpos = np.flatnonzero(first)
    ctx = np.array([_ctx_values(states[gi], e) for gi in g[fpos].tolist()], dtype="float64").reshape(-1, 6)
    cl_x, cl_t, cp_x, cp_t = (np.full(m, np.nan) for _ in range(4))
    ctx_run = np.zeros(m)
    ctx_jump = np.zeros(m, dtype=bool)
    cl_x[fpos], cl_t[fpos], cp_x[fpos], cp_t[fpos] = ctx[:, 0], ctx[:, 1], ctx[:, 2], ctx[:, 3]
    ctx_jump[fpos] = ctx[:, 4] > 0
    ctx_run[fpos] = ctx[:, 5]
    # previous and second previous value/time: in the batch, else from the context
    p1x, p1t = np.full(m, np.nan), np.full(m, np.nan)
    p1x[1:], p1t[1:] = x[:-1], t[:-1]
    p1x[first], p1t[first] = cl_x[first], cl_t[first]
    p2x, p2t = np.full(m, np.nan), np.full(m, np.nan)
    p2x[2:], p2t[2:] = x[:-2], t[:-2]
    sec = np.flatnonzero(second)
    p2x[sec], p2t[sec] = cl_x[sec - 1], cl_t[sec - 1]
    p2x[first], p2t[first] = cp_x[first], cp_t[first]
    # step
    jump = np.zeros(m, dtype=bool)
    if e in STEP_LIMITS:
        with np.errstate(invalid="ignore"):
            dt1 = (t - p1t) / 3600.0
            lim1, chk1 = _step_limit(e, np.nan_to_num(dt1, nan=-1.0))
            d1 = np.abs(x - p1x)
            jump = chk1 & (d1 > lim1)
            prev_jump = np.zeros(m, dtype=bool)
            prev_jump[1:] = jump[:-1]
            prev_jump = np.where(first, ctx_jump, prev_jump)
            dt2 = (t - p2t) / 3600.0
            lim2, chk2 = _step_limit(e, np.nan_to_num(dt2, nan=-1.0))
            back = prev_jump & chk2 & (np.abs(x - p2x) <= lim2)
            flagged = jump & ~back
        for i in np.flatnonzero(flagged).tolist():
            _add(flags[order[idx[i]]], e, f"step: {x[i] - p1x[i]:+.1f} in {dt1[i]:.1f} h (limit {lim1[i]:.1f})")
    # persistence
    run: np.ndarray = np.zeros(m)
    if e in PERSISTENCE:
        n_max, ignore = PERSISTENCE[e]
        ignored = np.isin(x, np.array(ignore)) if ignore else np.zeros(m, dtype=bool)
        same = (x == p1x) & ~ignored
        seg_start = ~same | first
        pos_idx = np.arange(m)
        seg_first = np.maximum.accumulate(np.where(seg_start, pos_idx, 0))
        extra = np.where(first[seg_first] & same[seg_first], ctx_run[seg_first], 0.0)
        run = (pos_idx - seg_first).astype("float64") + 1.0 + extra
        run = np.where(ignored, 0.0, run)
        for i in np.flatnonzero(run >= n_max).tolist():
            _add(flags[order[idx[i]]], e, f"persistence: same value {x[i]:g} in {int(run[i])} consecutive reports")
    # context update (last report of each station in this batch)
    lpos = np.flatnonzero(last)
    cols = (g[lpos].tolist(), x[lpos].tolist(), t[lpos].tolist(), p1x[lpos].tolist(), p1t[lpos].tolist(),
            jump[lpos].tolist(), run[lpos].astype("int64").tolist())
    for gi, xv, tv, px, pt, jv, rv in zip(*cols, strict=True):
        states[gi]["e"][e] = [xv, tv, px if px == px else None, pt if pt == pt else None, int(jv), rv]


def _f(v: Any) -> float:
    try:
        return float(v) if v is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def _nan_none(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def _anomaly(models: Mapping[str, AnomalyModel], uniq: list[str], inv: np.ndarray, t: np.ndarray,
             vals: dict[str, np.ndarray], valid: np.ndarray, flags: list[dict[str, str]]) -> None:
    """Score every report with its station's model, vectorised over stations (parameters gathered per row)."""
    n = t.size
    station_models = [models.get(s) for s in uniq]
    has_model = np.array([m is not None for m in station_models])[inv] & valid
    if not has_model.any():
        return
    for sets in _FEATURE_SETS.values():
        done = np.zeros(n, dtype=bool)  # rows scored by an earlier (richer) feature set of this kind
        for fs in sets:
            fms = [m.models.get(fs) if m is not None else None for m in station_models]
            if not any(fm is not None for fm in fms):
                continue
            model_of_group = np.array([i if fm is not None else -1 for i, fm in enumerate(fms)])
            avail = has_model & ~done & (model_of_group[inv] >= 0)
            for e in fs:
                avail &= np.isfinite(vals[e])
            rows = np.flatnonzero(avail)
            if rows.size == 0:
                continue
            done[rows] = True
            live = [fm for fm in fms if fm is not None]
            slot = np.cumsum(model_of_group >= 0) - 1  # group -> index into live
            mi = slot[inv[rows]]
            coef = np.stack([fm.coef for fm in live])[mi]  # (r, p, k)
            loc = np.stack([fm.location for fm in live])[mi]
            prec = np.stack([fm.precision for fm in live])[mi]
            thr = np.array([fm.threshold for fm in live])[mi]
            scale = np.stack([fm.scale for fm in live])[mi]
            kind = live[0].kind
            x = _design(kind, t[rows])
            y = np.stack([vals[e][rows] for e in fs], axis=-1)
            resid = y - np.einsum("rp,rpk->rk", x, coef)
            centred = resid - loc
            d2 = np.einsum("rj,rjk,rk->r", centred, prec, centred)
            for j in np.flatnonzero(d2 > thr).tolist():
                z = np.abs(resid[j] / scale[j])
                k = int(np.argmax(z))
                i = int(rows[j])
                _add(flags[i], fs[k], f"anomaly: Mahalanobis d2 {d2[j]:.1f} > {thr[j]:.1f} "
                                      f"({fs[k]} {vals[fs[k]][i]:g}, {resid[j][k]:+.1f} from climatology)")


# --------------------------------------------------------------------------------------------- scalar path
def _number(v: Any) -> tuple[float, bool]:
    """(value, bad): NaN + False for missing, NaN + True for present but not a finite number."""
    if v is None:
        return math.nan, False
    if isinstance(v, bool | str) or not isinstance(v, int | float | np.floating | np.integer):
        return math.nan, True
    try:
        f = float(v)
    except (OverflowError, ValueError):
        return math.nan, True
    return (f, False) if math.isfinite(f) else (math.nan, True)


def _check_one(r: Mapping[str, Any], res: QCResult, state: MutableMapping[str, Any],
               elevations: Mapping[str, float], models: Mapping[str, AnomalyModel]) -> None:
    """The checks of :func:`check_batch` for one report, in plain Python (kept equal by the tests)."""
    hard: str | None = None
    sid = r.get("station_id")
    if isinstance(sid, int) and not isinstance(sid, bool):
        sid = str(sid)
    if not isinstance(sid, str) or not sid.strip():
        hard = "station_id: missing or not a string"
        sid = ""
    sid = sid.strip()
    t = _times([r.get("time")])[0]
    if not math.isfinite(t):
        hard = hard or "time: missing or not an ISO-8601 time with UTC offset"
    v: dict[str, float] = {}
    for e in ELEMENTS:
        x, bad = _number(r.get(e))
        lo, hi = HARD_LIMITS[e]
        if bad:
            hard = hard or f"{e}: not a finite number ({str(r.get(e))[:20]!r})"
        elif x < lo or x > hi:
            hard = hard or f"{e}: {x:g} beyond the physical limits [{lo:g}, {hi:g}]"
        v[e] = x
    per, pr = v["precip_period_h"], v["precip_mm"]
    dur = per if math.isfinite(per) and per > 0 else DEFAULT_PRECIP_PERIOD_H
    envelope = JENNINGS_MM * max(dur, 1.0 / 60.0) ** JENNINGS_EXP
    if pr > envelope:
        hard = hard or f"precip_mm: {pr:g} mm above the world-record envelope ({envelope:.0f} mm in {dur:g} h)"
    if hard is not None:
        res.hard_fail = hard
        return
    flags = res.flags
    elev = float(elevations.get(sid, 0.0) or 0.0) / 1000.0
    for e, (lo, hi) in RANGE_LIMITS.items():
        if e in ("precip_mm", "precip_period_h"):
            continue
        x = v[e]
        if e == "pressure_hpa":
            lo_a = lo * float(_pressure_ratio(np.array(elev * 1000.0))) - 10.0
            hi_a = hi
        else:
            lo_a, hi_a = lo, hi + RANGE_LAPSE_PER_KM.get(e, 0.0) * elev
        if x < lo_a or x > hi_a:
            _add(flags, e, f"range: {x:g} outside [{lo_a:.1f}, {hi_a:.1f}]")
    if pr > PRECIP_SOFT_FRACTION * envelope:
        _add(flags, "precip_mm", f"range: {pr:g} mm > {PRECIP_SOFT_FRACTION * envelope:.0f} mm in {dur:g} h")
    tt, td, tx, tn = v["air_temp_c"], v["dewpoint_c"], v["tmax_c"], v["tmin_c"]
    if tn > tx + MINMAX_TOLERANCE_C:
        _add(flags, "tmin_c", f"consistency: tmin {tn:g} > tmax {tx:g}")
        _add(flags, "tmax_c", f"consistency: tmax {tx:g} < tmin {tn:g}")
    if td > tt + DEWPOINT_TOLERANCE_C:
        _add(flags, "dewpoint_c", f"consistency: dew point {td:g} > air temperature {tt:g}")
    w, g = v["wind_ms"], v["gust_ms"]
    if g < w - GUST_TOLERANCE_MS:
        _add(flags, "gust_ms", f"consistency: gust {g:g} < mean wind {w:g}")
    rh = v["rh_pct"]
    if math.isfinite(rh) and math.isfinite(tt) and math.isfinite(td):
        a, b = 17.625, 243.04
        rh_calc = float(100.0 * np.exp(a * td / (b + td) - a * tt / (b + tt)))
        if abs(rh - rh_calc) > RH_TOLERANCE_PCT:
            _add(flags, "rh_pct", f"consistency: RH {rh:g} % vs {rh_calc:.0f} % from T/Td")
    st_any = state.get(sid)
    if t > _ctx_time(st_any):
        st = _station_state(state, sid)
        for e in ELEMENTS:
            x = v[e]
            if (e in STEP_LIMITS or e in PERSISTENCE) and math.isfinite(x):
                _series_one(e, x, t, st, flags)
        st["t"] = float(t)
    am = models.get(sid)
    if am is not None:
        for sets in _FEATURE_SETS.values():
            for fs in sets:
                fm = am.models.get(fs)
                if fm is None or not all(math.isfinite(v[e]) for e in fs):
                    continue
                x_d = _design(fm.kind, np.array([t]))[0]
                resid = np.array([v[e] for e in fs]) - x_d @ fm.coef
                centred = resid - fm.location
                d2 = float(centred @ fm.precision @ centred)
                if d2 > fm.threshold:
                    k = int(np.argmax(np.abs(resid / fm.scale)))
                    _add(flags, fs[k], f"anomaly: Mahalanobis d2 {d2:.1f} > {fm.threshold:.1f} "
                                       f"({fs[k]} {v[fs[k]]:g}, {resid[k]:+.1f} from climatology)")
                break


def _series_one(e: str, x: float, t: float, st: dict[str, Any], flags: dict[str, str]) -> None:
    p1x, p1t, p2x, p2t, jumped, ctx_run = _ctx_values(st, e)
    ctx_jump = jumped > 0
    jump = False
    if e in STEP_LIMITS:
        lim, ref, cap, max_gap = STEP_LIMITS[e]
        dt1 = (t - p1t) / 3600.0
        dt1c = dt1 if math.isfinite(dt1) else -1.0
        lim1 = min(lim * math.sqrt(max(dt1c, ref) / ref), cap)
        jump = 0 < dt1c <= max_gap and abs(x - p1x) > lim1
        if jump:
            dt2 = (t - p2t) / 3600.0
            dt2c = dt2 if math.isfinite(dt2) else -1.0
            lim2 = min(lim * math.sqrt(max(dt2c, ref) / ref), cap)
            back = ctx_jump and 0 < dt2c <= max_gap and abs(x - p2x) <= lim2
            if not back:
                _add(flags, e, f"step: {x - p1x:+.1f} in {dt1:.1f} h (limit {lim1:.1f})")
    run = 0.0
    if e in PERSISTENCE:
        n_max, ignore = PERSISTENCE[e]
        if x not in ignore:
            run = ctx_run + 1.0 if x == p1x else 1.0
            if run >= n_max:
                _add(flags, e, f"persistence: same value {x:g} in {int(run)} consecutive reports")
    st["e"][e] = [float(x), float(t), _nan_none(p1x), _nan_none(p1t), int(jump), int(run)]
