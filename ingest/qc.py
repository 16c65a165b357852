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

Context (per station): :class:`QCState` keeps it in columns -- station id -> slot, ``t[slot]`` the time of
the last report and ``e[slot, element]`` six numbers per element (last value, last time, previous value,
previous time, last jumped 0/1, run length; NaN/0 when none) -- so that a batch gathers and scatters it with
numpy fancy indexing instead of per-station Python; it grows by doubling as stations appear, caches each
station's elevation, and ``to_bytes``/``from_bytes`` store it as a small header (element names, station
ids) plus the raw float64 buffers. The plain-dict form, which :func:`check_batch` still accepts (JSON, faust
tables, stored contexts), holds the same numbers::

    {station_id: {"t": last_time_epoch_s,
                  "e": {element: [last_value, last_time_s, previous_value, previous_time_s, last_jumped, run]}}}

and ``QCState.from_dict``/``to_dict`` convert between the two.

:func:`check_columns` runs the checks on parsed columns (station ids, epoch seconds, one float array per
element) against a QCState, vectorised across the batch (all stations at once). :func:`check_batch` parses
report dicts/Observations into those columns and runs the same code; with a dict context it converts the
batch's stations in and writes the updated entries back. With a dict context, batches of at most
:data:`SMALL_BATCH` reports go through a scalar implementation (``QualityControl.check`` is a batch of one);
all paths give identical results.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain, pairwise
from operator import itemgetter
from pathlib import Path
from typing import Any

import numpy as np

from warning.shared.records import OBSERVATION_ELEMENTS, Observation
from warning.shared.times import iso_utc

__all__ = [
    "ELEMENTS",
    "HARD_LIMITS",
    "PERSISTENCE",
    "RANGE_LIMITS",
    "SMALL_BATCH",
    "STEP_LIMITS",
    "AnomalyModel",
    "QCResult",
    "QCState",
    "QualityControl",
    "check_batch",
    "check_columns",
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


# --------------------------------------------------------------------------------------------- columnar context
_NO_CTX = (math.nan, math.nan, math.nan, math.nan, 0.0, 0.0)
_NF = len(_NO_CTX)  # per element: last value, last time, previous value, previous time, last jumped, run
_EIDX: dict[str, int] = {e: k for k, e in enumerate(ELEMENTS)}
_SERIES: tuple[int, ...] = tuple(k for k, e in enumerate(ELEMENTS) if e in STEP_LIMITS or e in PERSISTENCE)
_MAGIC = b"QCS1"
_HEAD = struct.Struct("<4sHHII")  # magic, bytes of the element names, fields, stations, bytes of the ids


class QCState:
    """Columnar QC context of a set of stations (see the module doc): one slot per station.

    ``t[slot]``: last report time (epoch s, -inf if none); ``e[slot, k]``: the six context values of
    ``ELEMENTS[k]`` (NaN/0 if none). ``t`` and ``e`` are views of the first ``len(self)`` slots of buffers
    that grow by doubling. Elevations are cached per slot on first use (a changed elevation table is not
    seen by stations already in the state; :meth:`forget_elevations` resets the cache).
    """

    __slots__ = ("_e", "_elev", "_enc", "_has_elev", "_t", "slot_of", "station_ids")

    def __init__(self, capacity: int = 64) -> None:
        self.slot_of: dict[str, int] = {}
        self.station_ids: list[str] = []
        self._enc: list[bytes] = []  # station ids encoded for to_bytes
        self._t, self._e, self._elev, self._has_elev = self._buffers(max(capacity, 1))

    @staticmethod
    def _buffers(cap: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        e = np.empty((cap, len(ELEMENTS), _NF))
        e[:] = _NO_CTX
        return np.full(cap, -np.inf), e, np.zeros(cap), np.zeros(cap, dtype=bool)

    def __len__(self) -> int:
        return len(self.station_ids)

    @property
    def t(self) -> np.ndarray:
        return self._t[:len(self.station_ids)]

    @property
    def e(self) -> np.ndarray:
        return self._e[:len(self.station_ids)]

    def __eq__(self, other: object) -> bool:
        """Same stations with the same values (slot order and NaN payloads aside)."""
        if not isinstance(other, QCState):
            return NotImplemented
        if len(self) != len(other) or other.slot_of.keys() != self.slot_of.keys():
            return False
        idx = np.array([other.slot_of[s] for s in self.station_ids], dtype=np.intp)
        return (np.array_equal(self.t, other._t[idx], equal_nan=True)
                and np.array_equal(self.e, other._e[idx], equal_nan=True))

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"QCState({len(self)} stations)"

    def _add_slots(self, ids: Sequence[str]) -> None:
        if len(set(ids)) != len(ids) or not self.slot_of.keys().isdisjoint(ids):
            raise ValueError("duplicate station ids")
        n0 = len(self.station_ids)
        n1 = n0 + len(ids)
        if n1 > self._t.size:  # amortised doubling; new slots start empty
            bufs = self._buffers(max(n1, 2 * self._t.size))
            for new, old in zip(bufs, (self._t, self._e, self._elev, self._has_elev), strict=True):
                new[:n0] = old[:n0]
            self._t, self._e, self._elev, self._has_elev = bufs
        self.station_ids.extend(ids)
        self.slot_of.update(zip(ids, range(n0, n1), strict=True))

    def slots_for(self, sids: Sequence[str], create: np.ndarray | None = None) -> np.ndarray:
        """Slot per station id (-1 if unknown); ids of unknown stations where ``create`` is True get a slot."""
        get = self.slot_of.get
        try:  # the usual case: all known; itemgetter looks them all up in one call (a tuple from 2 ids on)
            found = itemgetter(*sids)(self.slot_of) if len(sids) > 1 else tuple(self.slot_of[s] for s in sids)
            slot = np.fromiter(found, dtype=np.intp, count=len(sids))
        except KeyError:  # an unknown id
            slot = np.array([get(s, -1) for s in sids], dtype=np.intp)
        if create is None:
            return slot
        miss = (slot < 0) & create
        if miss.any():
            rows = np.flatnonzero(miss).tolist()
            self._add_slots(list(dict.fromkeys(str(sids[i]) for i in rows)))
            slot[rows] = [self.slot_of[sids[i]] for i in rows]
        return slot

    def subset(self, slots: np.ndarray) -> QCState:
        """A QCState of just these slots (in this order): what a caller stores in blocks."""
        out = QCState(capacity=max(1, int(slots.size)))
        ids = [self.station_ids[i] for i in slots.tolist()]
        back = out.slots_for(ids, create=np.ones(len(ids), dtype=bool))
        out._t[back], out._e[back] = self._t[slots], self._e[slots]
        return out

    def merge(self, other: QCState) -> None:
        """Take over ``other``'s stations (new ones get the next slots, in ``other``'s order)."""
        back = self.slots_for(other.station_ids, create=np.ones(len(other), dtype=bool))
        self._t[back], self._e[back] = other.t, other.e

    def elevation_km(self, slot: np.ndarray, elevations: Mapping[str, float] | None) -> np.ndarray:
        """Elevation (km) per slot; looked up in ``elevations`` once per slot (0 m without a table)."""
        if elevations is None:
            return np.zeros(slot.size)
        return self._elevation_m(slot, elevations) / 1000.0

    def _elevation_m(self, slot: np.ndarray, elevations: Mapping[str, float]) -> np.ndarray:
        miss = ~self._has_elev[slot]
        if miss.any():  # stations not seen before (np.unique costs even on nothing)
            need = np.unique(slot[miss])
            ids = self.station_ids
            self._elev[need] = [float(elevations.get(ids[s], 0.0) or 0.0) for s in need.tolist()]
            self._has_elev[need] = True
        return self._elev[slot]

    def forget_elevations(self) -> None:
        self._has_elev[:] = False

    # ----------------------------------------------------------------------------- conversions
    @classmethod
    def from_dict(cls, context: Mapping[str, Any]) -> QCState:
        """From the dict context (stored contexts, tests); malformed entries count as empty, as in check_batch."""
        ids: list[str] = []
        ts: list[float] = []
        cells: list[int] = []  # slot * len(ELEMENTS) + element index
        raw: list[list[Any]] = []  # entries converted in one numpy call
        odd: list[tuple[int, tuple[float, ...]]] = []  # anything else, one by one
        nk, eidx = len(ELEMENTS), _EIDX
        for sid, st in context.items():
            if not isinstance(sid, str):
                continue  # never matched by a (string) station id
            base = len(ids) * nk
            ids.append(sid)
            ts.append(_ctx_time(st))
            ev = st.get("e") if isinstance(st, dict) else None  # check_batch replaces other types by {}
            if isinstance(ev, dict):
                for e, v in ev.items():
                    k = eidx.get(e)
                    if k is None:
                        continue
                    if type(v) is list and len(v) == _NF:
                        raw.append(v)
                        cells.append(base + k)
                    else:
                        odd.append((base + k, _ctx_entry(v)))
        s = cls(len(ids))
        s._add_slots(ids)
        t = np.array(ts, dtype="float64")
        s._t[:len(ids)] = np.where(np.isnan(t), -np.inf, t)  # as the vectorised path always read it
        flat = s._e.reshape(-1, _NF)  # a view: row = slot * len(ELEMENTS) + element
        if raw:
            rows = _ctx_rows(raw) if len(raw) > 16 else None  # numpy pays off from a few stations on
            if rows is None:
                odd += zip(cells, map(_ctx_entry, raw), strict=True)
            else:
                flat[cells] = rows
        for c, r in odd:
            flat[c] = r
        return s

    def _present(self, slots: np.ndarray | None = None) -> np.ndarray:
        """[slot, element]: the element has a context (not all NaN/0)."""
        e = self.e if slots is None else self._e[slots]
        f = e.reshape(-1, _NF).T  # column ops: reductions over a length-6 axis are slow
        empty = np.isnan(f[0]) & np.isnan(f[1]) & np.isnan(f[2]) & np.isnan(f[3]) & (f[4] == 0) & (f[5] == 0)
        return ~empty.reshape(e.shape[0], len(ELEMENTS))

    def to_dict(self) -> dict[str, Any]:
        """The dict context (as check_batch writes it); slots that never had a report are left out."""
        return self._dicts(np.arange(len(self)))

    def _dicts(self, slots: np.ndarray) -> dict[str, Any]:
        out: dict[str, Any] = {}
        present = self._present(slots).tolist()
        ids = [self.station_ids[s] for s in slots.tolist()]
        for sid, tv, rows, pres in zip(ids, self._t[slots].tolist(), self._e[slots].tolist(), present, strict=True):
            ev = {ELEMENTS[k]: _ctx_list(rows[k]) for k, p in enumerate(pres) if p}
            if tv == -math.inf and not ev:
                continue
            out[sid] = {"t": None if tv == -math.inf or tv != tv else tv, "e": ev}
        return out

    def to_bytes(self) -> bytes:
        """Header, element names, station ids, then the raw little-endian float64 ``t`` and ``e`` buffers
        (element columns that no station uses are left out)."""
        n = len(self)
        used = np.flatnonzero(self._present().any(axis=0)).tolist() if n else []
        names = ",".join(ELEMENTS[k] for k in used).encode("ascii")
        enc = self._enc  # ids only ever get appended: encode each once
        enc += [s.encode("utf-8", "surrogatepass") for s in self.station_ids[len(enc):]]
        lens = np.array([len(b) for b in enc], dtype="<u4")
        blob = b"".join(enc)
        head = _HEAD.pack(_MAGIC, len(names), _NF, n, len(blob))
        e = np.ascontiguousarray(self._e[:n, used], dtype="<f8")
        return b"".join((head, names, lens.tobytes(), blob, self.t.astype("<f8").tobytes(), e.tobytes()))

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview) -> QCState:
        """Inverse of :meth:`to_bytes`; ValueError on anything else (element columns unknown here are dropped)."""
        if not isinstance(data, bytes | bytearray | memoryview):  # bytes(n) would allocate n zero bytes
            raise TypeError(f"QCState.from_bytes: bytes expected, not {type(data).__name__}")
        b = bytes(data)
        if len(b) < _HEAD.size:
            raise ValueError("QCState: truncated header")
        magic, names_len, nf, n, ids_len = _HEAD.unpack_from(b)
        if magic != _MAGIC or nf != _NF:
            raise ValueError("QCState: not a serialised QC state")
        off = _HEAD.size
        names = b[off:off + names_len].decode("ascii").split(",") if names_len else []
        if len(set(names)) != len(names):
            raise ValueError("QCState: duplicate element names")
        off += names_len
        size = off + 4 * n + ids_len + 8 * n * (1 + _NF * len(names))
        if len(b) != size:
            raise ValueError(f"QCState: {len(b)} bytes, header says {size}")
        lens = np.frombuffer(b, "<u4", n, off).astype(np.int64)
        off += 4 * n
        if int(lens.sum()) != ids_len:
            raise ValueError("QCState: station id lengths do not add up")
        bounds = (np.concatenate(([0], np.cumsum(lens))) + off).tolist()
        ids = [b[i:j].decode("utf-8", "surrogatepass") for i, j in pairwise(bounds)]
        off += ids_len
        s = cls(n)
        s._add_slots(ids)  # ValueError on duplicates
        s._t[:n] = np.frombuffer(b, "<f8", n, off)
        e = np.frombuffer(b, "<f8", n * _NF * len(names), off + 8 * n).reshape(n, len(names), _NF)
        keep = [(j, _EIDX[nm]) for j, nm in enumerate(names) if nm in _EIDX]
        if keep and n:
            s._e[:n, [k for _, k in keep]] = e[:, [j for j, _ in keep]]
        return s


def _ctx_list(r: list[float]) -> list[Any]:
    """One element's context as the dict context stores it (NaN -> None)."""
    x, t, px, pt, j, run = r
    return [x if x == x else None, t if t == t else None, px if px == px else None, pt if pt == pt else None,
            int(j), int(run)]


def _ctx_rows(raw: list[list[Any]]) -> np.ndarray | None:
    """Stored element contexts (lists of 6 plain numbers/None) as an (n, 6) array, exactly as _ctx_entry
    reads each one; None if some entry holds anything else."""
    items = list(chain.from_iterable(raw))
    if not _PLAIN_TYPES.issuperset(map(type, items)):
        return None
    try:
        a = np.array(items, dtype="float64").reshape(-1, _NF)  # None -> NaN
    except OverflowError:
        return None
    a[:, 4] = a[:, 4] > 0
    a[:, 5] = np.where(np.isfinite(a[:, 5]), a[:, 5], 0.0)
    return a


# --------------------------------------------------------------------------------------------- the checks
class QualityControl:
    """QC with per-station rolling context (dict or :class:`QCState`, see the module doc), station
    elevations and models.

    ``elevations``: station_id -> metres (default: the station registry; unknown stations count as 0 m).
    """

    def __init__(
        self,
        *,
        elevations: Mapping[str, float] | None = None,
        models: Mapping[str, AnomalyModel] | None = None,
        context: MutableMapping[str, Any] | QCState | None = None,
    ) -> None:
        if elevations is None:
            elevations = _registry_elevations()
        self.elevations: dict[str, float] = dict(elevations)
        self.models: dict[str, AnomalyModel] = dict(models or {})
        self.context: MutableMapping[str, Any] | QCState = context if context is not None else {}

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
        from warning.shared.regions import StationRegistry

        return {s.station_id: float(s.elevation_m) for s in StationRegistry.load()}
    except Exception:  # the registry is a convenience; QC works without it (elevation 0 m)
        return {}


def check_batch(
    batch: Sequence[Observation | Mapping[str, Any]],
    context: QualityControl | MutableMapping[str, Any] | QCState | None = None,
    *,
    small_batch: int = SMALL_BATCH,
) -> list[QCResult]:
    """QC a batch (reports of any stations, each station's reports in time order); update the context.

    ``context`` is a :class:`QualityControl` (state, elevations, models) or just the state (dict or
    :class:`QCState`; then elevation 0 m and no anomaly model). Never raises on bad input: unusable reports
    come back with ``hard_fail``. Batches of at most ``small_batch`` reports run through the scalar
    implementation, larger ones through the vectorised one (:func:`check_columns`).
    """
    elevations: Mapping[str, float] | None
    if isinstance(context, QualityControl):
        state, elevations, models = context.context, context.elevations, context.models
    else:
        state = context if context is not None else {}
        elevations, models = None, {}
    n = len(batch)
    results = [QCResult() for _ in range(n)]
    if n == 0:
        return results
    rows = [_as_dict(o) for o in batch]
    if n <= small_batch:  # numpy overhead dominates: same checks, scalar
        if isinstance(state, QCState):
            _check_small(rows, results, state, elevations, models)
        else:
            for i, r in enumerate(rows):
                _check_one(r, results[i], state, elevations or {}, models)
        return results
    sids, t, vals, hard, bad = _parse_rows(rows)
    # a dict state: the batch's stations go into a QCState and the updated entries come back out
    cs = state if isinstance(state, QCState) else QCState.from_dict(
        {s: st for s in dict.fromkeys(sids) if (st := state.get(s)) is not None})
    invalid = np.array([h is not None for h in hard], dtype=bool)
    flags, fresh, updated = _check_core(sids, t, vals, cs, elevations, models, hard, invalid, bad)
    if not isinstance(state, QCState):
        _write_back(cs, fresh, updated, state)
    for i, h in enumerate(hard):
        results[i].hard_fail = h
    for i, f in flags.items():
        results[i].flags = f
    return results


def check_columns(
    sids: Sequence[str],
    t: np.ndarray,
    vals: Mapping[str, np.ndarray],
    state: QCState,
    *,
    elevations: Mapping[str, float] | None = None,
    models: Mapping[str, AnomalyModel] | None = None,
    small_batch: int = SMALL_BATCH,
) -> tuple[list[str | None], dict[int, dict[str, str]]]:
    """The checks of :func:`check_batch` on parsed columns; updates ``state`` in place.

    ``sids``: station ids (clean strings); ``t``: epoch seconds; ``vals[element]``: float64 per element of
    :data:`ELEMENTS` with NaN for missing (a missing key is all-NaN). Returns the ``hard_fail`` reason per
    row (None if accepted) and ``{row: {element: reason}}`` for the flagged rows only. Batches of at most
    ``small_batch`` reports with whole-second times run through the scalar implementation, as in ``check_batch``.
    """
    t = np.asarray(t, dtype="float64")
    n = t.size
    if t.ndim != 1:
        raise ValueError(f"check_columns: times have shape {t.shape}, expected one dimension")
    cols: dict[str, np.ndarray] = {}
    for e in ELEMENTS:
        cols[e] = np.asarray(vals[e], dtype="float64") if e in vals else np.full(n, np.nan)
        if cols[e].shape != (n,):
            raise ValueError(f"check_columns: {e} has shape {cols[e].shape}, expected ({n},)")
    if len(sids) != n:
        raise ValueError(f"check_columns: {len(sids)} station ids for {n} times")
    # numpy's per-call overhead dominates a few reports; whole seconds survive the trip through ISO text exactly
    if n <= small_batch and np.isfinite(t).all() and (t == np.floor(t)).all() and all(sids):
        rows: list[Mapping[str, Any]] = [
            {"station_id": sid, "time": iso_utc(ti),
             **{e: float(cols[e][i]) for e in ELEMENTS if cols[e][i] == cols[e][i]}}
            for i, (sid, ti) in enumerate(zip(sids, t.tolist(), strict=True))]
        results = [QCResult() for _ in range(n)]
        _check_small(rows, results, state, elevations, models or {})
        return [r.hard_fail for r in results], {i: r.flags for i, r in enumerate(results) if r.flags}
    hard: list[str | None] = [None] * n
    invalid = ~np.isfinite(t)
    for i in np.flatnonzero(invalid).tolist():
        hard[i] = "time: missing or not an ISO-8601 time with UTC offset"
    if "" in sids:
        for i in (i for i, s in enumerate(sids) if not s):
            hard[i] = "station_id: missing or not a string"
            invalid[i] = True
    flags, _, _ = _check_core(sids, t, cols, state, elevations, models or {}, hard, invalid)
    return hard, flags


def _check_small(rows: list[Mapping[str, Any]], results: list[QCResult], state: QCState,
                 elevations: Mapping[str, float] | None, models: Mapping[str, AnomalyModel]) -> None:
    """A small batch on a QCState: the scalar code on a dict copy of the batch's stations, copied back."""
    ids = list(dict.fromkeys(s for r in rows if (s := _station_id(r.get("station_id")))))
    slot = state.slots_for(ids)
    known = slot[slot >= 0]
    ctx = state._dicts(known)
    elev: dict[str, float] = {}
    if elevations is not None:  # the cached elevation of known stations, as the vectorised path uses
        elev = {s: float(elevations.get(s, 0.0) or 0.0) for s, sl in zip(ids, slot.tolist(), strict=True) if sl < 0}
        elev.update(zip([state.station_ids[s] for s in known.tolist()],
                        state._elevation_m(known, elevations).tolist(), strict=True))
    for i, r in enumerate(rows):
        _check_one(r, results[i], ctx, elev, models)
    if ctx:
        tmp = QCState.from_dict(ctx)
        back = state.slots_for(tmp.station_ids, create=np.ones(len(tmp), dtype=bool))
        state._t[back], state._e[back] = tmp.t, tmp.e
        if elevations is not None:  # stations new to the state keep the elevation just looked up
            state._elev[back] = [elev.get(sid, 0.0) for sid in tmp.station_ids]
            state._has_elev[back] = True


def _station_id(v: Any) -> str | None:
    """The station id of a report (ints accepted, whitespace stripped); None if missing or unusable."""
    if isinstance(v, int) and not isinstance(v, bool):
        v = str(v)
    return (v.strip() or None) if isinstance(v, str) else None


def _parse_rows(rows: Sequence[Mapping[str, Any]]) -> tuple[
        list[str], np.ndarray, dict[str, np.ndarray], list[str | None], dict[str, dict[int, str]]]:
    """Columns of dict rows: station ids, times, values (NaN = missing), identity/time hard fails and, per
    element, the reasons of present-but-unusable values."""
    n = len(rows)
    hard: list[str | None] = [None] * n
    sids: list[str] = []
    for i, r in enumerate(rows):
        sid = _station_id(r.get("station_id"))
        if sid is None:
            hard[i] = "station_id: missing or not a string"
        sids.append(sid or "")
    t = _times([r.get("time") for r in rows])
    for i in np.flatnonzero(~np.isfinite(t)).tolist():
        hard[i] = hard[i] or "time: missing or not an ISO-8601 time with UTC offset"
    vals: dict[str, np.ndarray] = {}
    bad: dict[str, dict[int, str]] = {}
    for e in ELEMENTS:
        vals[e], b = _column(rows, e)
        if b.any():
            bad[e] = {i: f"{e}: not a finite number ({str(rows[i].get(e))[:20]!r})" for i in np.flatnonzero(b).tolist()}
    return sids, t, vals, hard, bad


def _write_back(cs: QCState, fresh: np.ndarray, updated: dict[int, np.ndarray],
                state: MutableMapping[str, Any]) -> None:
    """Write the updated stations/elements of ``cs`` into the dict context (untouched entries stay as they are)."""
    ids = cs.station_ids
    sts = {s: _station_state(state, ids[s]) for s in sorted(fresh.tolist(), key=ids.__getitem__)}
    for k, slots in updated.items():
        e = ELEMENTS[k]
        c = cs._e[slots, k]
        cols = (slots.tolist(), c[:, 0].tolist(), c[:, 1].tolist(), _nan_to_none(c[:, 2]), _nan_to_none(c[:, 3]),
                c[:, 4].astype("int64").tolist(),
                c[:, 5].astype("int64").tolist())
        for s, x, t, a, b, j, r in zip(*cols, strict=True):
            sts[s]["e"][e] = [x, t, a, b, j, r]
    for s, st in sts.items():
        st["t"] = float(cs._t[s])


def _nan_to_none(a: np.ndarray) -> list[float | None]:
    o = a.astype(object)  # Python floats
    o[np.isnan(a)] = None
    return o.tolist()


# the limit tables as columns, for checking all elements at once
_HARD_LO = np.array([[HARD_LIMITS[e][0]] for e in ELEMENTS])
_HARD_HI = np.array([[HARD_LIMITS[e][1]] for e in ELEMENTS])
_RANGE_NAMES = tuple(e for e in RANGE_LIMITS if e not in ("precip_mm", "precip_period_h"))  # precip: own bound
_RANGE_ROWS = np.array([ELEMENTS.index(e) for e in _RANGE_NAMES])
_RANGE_LO = np.array([[RANGE_LIMITS[e][0]] for e in _RANGE_NAMES])
_RANGE_HI = np.array([[RANGE_LIMITS[e][1]] for e in _RANGE_NAMES])
_RANGE_LAPSE = np.array([[RANGE_LAPSE_PER_KM.get(e, 0.0)] for e in _RANGE_NAMES])
_RANGE_PRESSURE = _RANGE_NAMES.index("pressure_hpa")


@np.errstate(all="ignore")  # NaN = missing; rejected rows (any value) are computed too, then masked
def _check_core(sids: Sequence[str], t: np.ndarray, vals: dict[str, np.ndarray], state: QCState,
                elevations: Mapping[str, float] | None, models: Mapping[str, AnomalyModel],
                hard: list[str | None], invalid: np.ndarray, bad: Mapping[str, dict[int, str]] | None = None,
                ) -> tuple[dict[int, dict[str, str]], np.ndarray, dict[int, np.ndarray]]:
    """All checks on columns; fills ``hard`` (and its mask ``invalid``) in place. Returns the flags of flagged
    rows, the slots whose time advanced and, per element index, the slots whose element context was rewritten.
    The helpers run under this function's errstate (NaN comparisons and overflows stay silent)."""
    n = t.size
    flags: dict[int, dict[str, str]] = {}
    x_all = np.array([vals[e] for e in ELEMENTS])  # (element, report); np.array is faster than np.stack here
    _reject_beyond_hard_limits(x_all, hard, invalid, bad)
    pr = vals["precip_mm"]
    dur, envelope = _precip_envelope(vals["precip_period_h"])
    _reject_above_precip_envelope(pr, dur, envelope, hard, invalid)
    valid = ~invalid
    vidx = np.flatnonzero(valid)
    slot = state.slots_for(sids, create=valid)  # only accepted reports create stations
    if vidx.size == n:
        elev = state.elevation_km(slot, elevations)
    else:
        elev = np.zeros(n)
        elev[vidx] = state.elevation_km(slot[vidx], elevations)
    _flag_soft_ranges(x_all, elev, valid, flags)
    soft_pr = valid & (pr > PRECIP_SOFT_FRACTION * envelope)
    for i in np.flatnonzero(soft_pr).tolist():
        soft = PRECIP_SOFT_FRACTION * envelope[i]
        _add(flags.setdefault(i, {}), "precip_mm", f"range: {pr[i]:g} mm > {soft:.0f} mm in {dur[i]:g} h")
    _flag_inconsistencies(vals, valid, flags)
    fresh_slots = np.zeros(0, dtype=np.intp)
    updated: dict[int, np.ndarray] = {}
    if vidx.size:
        fresh_slots, updated = _check_series_of_accepted(t, x_all, slot, vidx, state, flags)
        if models:
            uniq, inv_v = np.unique(slot[vidx], return_inverse=True)
            inv = np.zeros(n, dtype=np.intp)
            inv[vidx] = inv_v
            _anomaly(models, [state.station_ids[s] for s in uniq.tolist()], inv, t, vals, valid, flags)
    return flags, fresh_slots, updated


def _reject_beyond_hard_limits(x_all: np.ndarray, hard: list[str | None], invalid: np.ndarray,
                               bad: Mapping[str, dict[int, str]] | None) -> None:
    """Hard limits, all elements at once: the first unusable element (in ELEMENTS order) names the rejection.
    Fills ``hard`` and ``invalid`` in place; ``bad``: present but unusable values found while parsing."""
    out_all = (x_all < _HARD_LO) | (x_all > _HARD_HI)
    if bad or out_all.any():  # rare
        for j, e in enumerate(ELEMENTS):
            for i, why in (bad or {}).get(e, {}).items():
                hard[i] = hard[i] or why
                invalid[i] = True
            lo, hi = HARD_LIMITS[e]
            for i in np.flatnonzero(out_all[j]).tolist():
                hard[i] = hard[i] or f"{e}: {x_all[j, i]:g} beyond the physical limits [{lo:g}, {hi:g}]"
        invalid |= out_all.any(axis=0)


def _precip_envelope(period: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(accumulation period in h, world-record precipitation in mm for that period) per report."""
    dur = np.where(np.isfinite(period) & (period > 0), period, DEFAULT_PRECIP_PERIOD_H)
    envelope = JENNINGS_MM * np.power(np.maximum(dur, 1.0 / 60.0), JENNINGS_EXP)
    return dur, envelope


def _reject_above_precip_envelope(pr: np.ndarray, dur: np.ndarray, envelope: np.ndarray, hard: list[str | None],
                                  invalid: np.ndarray) -> None:
    over = pr > envelope
    invalid |= over
    for i in np.flatnonzero(over).tolist():
        hard[i] = hard[i] or f"precip_mm: {pr[i]:g} mm above the world-record envelope ({envelope[i]:.0f} mm " \
                             f"in {dur[i]:g} h)"


def _flag_soft_ranges(x_all: np.ndarray, elev: np.ndarray, valid: np.ndarray, flags: dict[int, dict[str, str]]
                      ) -> None:
    """Soft range, all elements at once (rows: _RANGE_NAMES); the upper bound of temperatures follows the
    elevation (km per report)."""
    x_rng = x_all[_RANGE_ROWS]
    lo_a = np.broadcast_to(_RANGE_LO, x_rng.shape)
    hi_a = _RANGE_HI + _RANGE_LAPSE * elev
    out_rng = (x_rng < lo_a) | (x_rng > hi_a)
    j = _RANGE_PRESSURE
    if not np.isnan(x_rng[j]).all():  # station-level or sea-level pressure: the lower bound follows the elevation
        lo_a = lo_a.copy()
        lo_a[j] = RANGE_LIMITS["pressure_hpa"][0] * _pressure_ratio(elev * 1000.0) - 10.0
        hi_a[j] = RANGE_LIMITS["pressure_hpa"][1]
        out_rng[j] = (x_rng[j] < lo_a[j]) | (x_rng[j] > hi_a[j])
    out_rng &= valid
    if out_rng.any():
        for j, e in enumerate(_RANGE_NAMES):
            for i in np.flatnonzero(out_rng[j]).tolist():
                _add(flags.setdefault(i, {}), e,
                     f"range: {x_rng[j, i]:g} outside [{lo_a[j, i]:.1f}, {hi_a[j, i]:.1f}]")


def _flag_inconsistencies(vals: dict[str, np.ndarray], valid: np.ndarray, flags: dict[int, dict[str, str]]) -> None:
    """Internal consistency (one test for all four checks; each flags in turn)."""
    tt, td, tx, tn = vals["air_temp_c"], vals["dewpoint_c"], vals["tmax_c"], vals["tmin_c"]
    w, g = vals["wind_ms"], vals["gust_ms"]
    rh = vals["rh_pct"]
    a, b = 17.625, 243.04  # Magnus, Alduchov & Eskridge (1996), as ingest.formats.rh_from_dewpoint
    if np.isnan(td).all():  # no dew point (RH from T/Td all NaN): skip the exp
        rh_out = np.zeros(tt.size, dtype=bool)
    else:
        rh_calc = 100.0 * np.exp(a * td / (b + td) - a * tt / (b + tt))
        rh_out = np.abs(rh - rh_calc) > RH_TOLERANCE_PCT
    cons = np.array([tn > tx + MINMAX_TOLERANCE_C, td > tt + DEWPOINT_TOLERANCE_C, g < w - GUST_TOLERANCE_MS,
                     rh_out]) & valid
    if cons.any():
        for i in np.flatnonzero(cons[0]).tolist():
            _add(flags.setdefault(i, {}), "tmin_c", f"consistency: tmin {tn[i]:g} > tmax {tx[i]:g}")
            _add(flags[i], "tmax_c", f"consistency: tmax {tx[i]:g} < tmin {tn[i]:g}")
        for i in np.flatnonzero(cons[1]).tolist():
            _add(flags.setdefault(i, {}), "dewpoint_c",
                 f"consistency: dew point {td[i]:g} > air temperature {tt[i]:g}")
        for i in np.flatnonzero(cons[2]).tolist():
            _add(flags.setdefault(i, {}), "gust_ms", f"consistency: gust {g[i]:g} < mean wind {w[i]:g}")
        for i in np.flatnonzero(cons[3]).tolist():
            _add(flags.setdefault(i, {}), "rh_pct", f"consistency: RH {rh[i]:g} % vs {rh_calc[i]:.0f} % from T/Td")


def _check_series_of_accepted(t: np.ndarray, x_all: np.ndarray, slot: np.ndarray, vidx: np.ndarray, state: QCState,
                              flags: dict[int, dict[str, str]]) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Step and persistence checks of the accepted reports (rows ``vidx``, stations ``slot``); moves the station
    contexts on. Returns the slots whose time advanced and, per element index, the slots rewritten."""
    # accepted reports grouped by station (arrival order kept); only reports newer than everything seen
    # before from their station get step/persistence checks and move the context on
    order = vidx[np.argsort(slot[vidx], kind="stable")]
    gs, ts = slot[order], t[order]
    fresh = _fresh(gs, ts, state._t[gs])
    if not fresh.all():
        order, gs, ts = order[fresh], gs[fresh], ts[fresh]
    xs = x_all[_S_K][:, order]  # (series element, fresh report)
    fin = np.isfinite(xs)
    # elements present in the same reports are checked together (usually: all in every report)
    groups: dict[bytes, list[int]] = {}
    for j in np.flatnonzero(fin.any(axis=1)).tolist():
        groups.setdefault(fin[j].tobytes(), []).append(j)
    events: list[tuple[int, int, int, str]] = []
    written: dict[int, np.ndarray] = {}
    for js in groups.values():
        use = fin[js[0]]
        if use.all():
            gl = _series_checks(js, order, xs[js], ts, gs, state._e, events)
        else:
            pos = np.flatnonzero(use)
            gl = _series_checks(js, order[pos], xs[js][:, pos], ts[pos], gs[pos], state._e, events)
        written.update(dict.fromkeys((_SERIES[j] for j in js), gl))
    updated = {k: written[k] for k in _SERIES if k in written}
    # flags in the order of the per-element checks: by element, steps before persistence, then by position
    for k, _, i, why in sorted(events, key=lambda ev: ev[:2]):
        _add(flags.setdefault(i, {}), ELEMENTS[k], why)
    # station times: the last fresh report of each station is its newest
    fresh_slots = np.zeros(0, dtype=np.intp)
    if gs.size:
        lastf = np.append(gs[1:] != gs[:-1], True)
        fresh_slots = gs[lastf]
        state._t[fresh_slots] = ts[lastf]
    return fresh_slots, updated


def _fresh(g: np.ndarray, t: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """Per position (stations contiguous, ``seed`` = the station's context time): newer than the context
    time and than every earlier time of the station."""
    first = np.ones(g.size, dtype=bool)
    first[1:] = g[1:] != g[:-1]
    prev = np.empty_like(t)
    prev[0] = seed[0]
    prev[1:] = np.where(first[1:], seed[1:], t[:-1])
    fresh = t > prev
    if fresh.all():  # the usual case: times increase, so the previous one is the maximum
        return fresh
    # segmented running maximum on dense ranks (exact for any float times): group keys never overlap
    _, r = np.unique(np.concatenate((t, seed)), return_inverse=True)
    r = r.reshape(-1).astype(np.int64)
    rt, rs = r[:t.size], r[t.size:]
    gk = (np.cumsum(first) - 1) * (int(r.max()) + 1)
    prefix = np.maximum.accumulate(gk + rt)
    before = rs.copy()
    before[1:] = np.where(first[1:], rs[1:], np.maximum(prefix[:-1] - gk[1:], rs[1:]))
    return rt > before


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


def _ctx_values(st: Any, e: str) -> tuple[float, ...]:
    """(last value, last time, previous value, previous time, last jumped 0/1, run) of an element; NaN/0 if none."""
    try:
        v = st["e"][e]
    except (KeyError, TypeError, IndexError):
        return _NO_CTX
    return _ctx_entry(v)


def _ctx_entry(v: Any) -> tuple[float, ...]:
    """One stored element context (list of 6) as floats; NaN/0 if malformed."""
    if not isinstance(v, list | tuple) or len(v) != 6:
        return _NO_CTX
    if type(v[0]) is float and type(v[1]) is float and type(v[4]) is int and type(v[5]) is int:  # as written
        c, d = v[2], v[3]
        return (v[0], v[1], math.nan if c is None else _f(c), math.nan if d is None else _f(d),
                1.0 if v[4] > 0 else 0.0, float(v[5]))
    jumped = 1.0 if _f(v[4]) > 0 else 0.0
    run = _f(v[5])
    return _f(v[0]), _f(v[1]), _f(v[2]), _f(v[3]), jumped, run if math.isfinite(run) else 0.0


# Step/persistence parameters of the elements of _SERIES (rows in that order), so that several elements are checked
# in one pass: step (limit at the reference gap, reference gap, cap, max gap; limit inf: no step check, never a
# jump), the run length flagged (inf: none), the ignored values (NaN-padded) and "no persistence check" (run 0).
_S_NAMES = tuple(ELEMENTS[k] for k in _SERIES)
_S_K = np.array(_SERIES)  # their element indices (= rows in an (ELEMENTS, report) array)
_S_STEP = np.array([STEP_LIMITS.get(e, (math.inf, 1.0, math.inf, -math.inf)) for e in _S_NAMES]).reshape(-1, 4)
#: the lowest step limit of any gap, min(limit, cap) (the gap factor sqrt(max(gap, ref) / ref) is >= 1)
_S_STEP_LOW = np.array([min(lim, cap) if ref > 0 and lim >= 0 else -math.inf for lim, ref, cap, _ in _S_STEP])
_S_RUN = np.array([float(PERSISTENCE[e][0]) if e in PERSISTENCE else math.inf for e in _S_NAMES])
_S_NO_RUN = np.array([e not in PERSISTENCE for e in _S_NAMES])
_S_IGNORE = np.full((len(_S_NAMES), max([1] + [len(v[1]) for v in PERSISTENCE.values()])), math.nan)
for _j, _e in enumerate(_S_NAMES):
    _ign = PERSISTENCE.get(_e, (0, ()))[1]
    _S_IGNORE[_j, :len(_ign)] = _ign


def _series_checks(js: list[int], rows: np.ndarray, x: np.ndarray, t: np.ndarray, g: np.ndarray,
                   ctx: np.ndarray, events: list[tuple[int, int, int, str]]) -> np.ndarray:
    """Step and persistence checks of the elements ``_SERIES[j]`` (j in ``js``) on fresh reports grouped by slot
    ``g`` (``rows``: their row numbers), all elements at once: ``x[a]`` holds the values of element ``js[a]``,
    present in every one of these reports. Reads and writes ``ctx`` = QCState._e; appends the flags as (element
    index, 0 step / 1 persistence, row, reason) to ``events``; returns the slots written."""
    sel = np.array(js)
    ks = _S_K[sel]
    n_el, m = x.shape
    first = np.ones(m, dtype=bool)
    first[1:] = g[1:] != g[:-1]
    fpos = np.flatnonzero(first)  # each station's first report
    lpos = np.append(fpos[1:] - 1, m - 1)  # and its last
    nk = ctx.shape[1]
    # one 48-byte record per (slot, element), a view (QCState._e is C-contiguous): take/put move whole contexts
    # (numpy's fast 1-D paths, ~4x faster than fancy indexing of the 3-D array)
    cells = ctx.reshape(-1, _NF).view(f"V{8 * _NF}").reshape(-1)
    # (element, station, 6): the context, read at the station's first report
    c = cells.take(ks[:, None] + nk * g[fpos]).view(np.float64).reshape(n_el, fpos.size, _NF)
    # previous value/time: in the batch, else from the context
    p1x = np.empty((n_el, m))
    p1x[:, 1:] = x[:, :-1]
    p1x[:, fpos] = c[..., 0]
    p1t = np.empty((n_el, m))
    p1t[:, 1:] = t[:-1]
    p1t[:, fpos] = c[..., 1]
    jump = _step_jumps(sel, rows, x, t, p1x, p1t, first, c, events)
    run = _persistence_runs(sel, rows, x, p1x, fpos, c, events)
    # context update: each station's last report
    gl = g[lpos]
    new = np.empty((n_el, lpos.size, _NF))
    new[..., 0] = x[:, lpos]
    new[..., 1] = t[lpos]
    new[..., 2] = p1x[:, lpos]
    new[..., 3] = p1t[:, lpos]
    new[..., 4] = jump[:, lpos]
    new[..., 5] = run[:, lpos].astype("int64")  # stored as a whole number, as the dict context does
    np.put(cells, ks[:, None] + nk * gl, new.reshape(-1, _NF).view(cells.dtype))
    return gl


def _step_jumps(sel: np.ndarray, rows: np.ndarray, x: np.ndarray, t: np.ndarray, p1x: np.ndarray,
                p1t: np.ndarray, first: np.ndarray, c: np.ndarray, events: list[tuple[int, int, int, str]]
                ) -> np.ndarray:
    """The step check of :func:`_series_checks` (``sel``: rows of the _S_* tables, ``first``: a station's first
    report, ``c``: the contexts read at those). Returns the jumps (element, report), flagged or not: a jump back
    from a flagged jump is not flagged, but is remembered as a jump."""
    ks = _S_K[sel]
    n_el, m = x.shape
    # a change above the lowest possible limit makes a candidate (usually none: no gap-dependent limits);
    # a NaN gap (no previous time) gives a NaN limit and fails the gap test, as no check
    diff = np.abs(x - p1x)
    jump = diff > _S_STEP_LOW[sel][:, None]
    if not jump.any():
        return jump
    lim, ref, cap, max_gap = (p[:, None] for p in _S_STEP[sel].T)
    dt1 = (t - p1t) / 3600.0
    lim1 = np.minimum(lim * np.sqrt(np.maximum(dt1, ref) / ref), cap)
    jump = (dt1 > 0) & (dt1 <= max_gap) & (diff > lim1)
    if not jump.any():
        return jump
    # rare: a jump is flagged unless it is the return from a flagged jump (second previous report)
    fpos = np.flatnonzero(first)
    second = np.zeros(m, dtype=bool)
    second[1:] = first[:-1] & ~first[1:]
    spos = np.flatnonzero(second)
    sst = np.cumsum(first)[spos] - 1  # their station (index into fpos)
    p2x = np.empty((n_el, m))
    p2t = np.empty((n_el, m))
    p2x[:, 2:], p2t[:, 2:] = x[:, :-2], t[:-2]
    p2x[:, spos], p2t[:, spos] = c[:, sst, 0], c[:, sst, 1]
    p2x[:, fpos], p2t[:, fpos] = c[..., 2], c[..., 3]
    prev_jump = np.empty((n_el, m), dtype=bool)
    prev_jump[:, 1:] = jump[:, :-1]
    prev_jump[:, fpos] = c[..., 4] > 0
    dt2 = (t - p2t) / 3600.0
    lim2 = np.minimum(lim * np.sqrt(np.maximum(dt2, ref) / ref), cap)
    back = prev_jump & (dt2 > 0) & (dt2 <= max_gap) & (np.abs(x - p2x) <= lim2)
    for a, i in zip(*np.nonzero(jump & ~back), strict=True):
        events.append((int(ks[a]), 0, int(rows[i]),
                       f"step: {x[a, i] - p1x[a, i]:+.1f} in {dt1[a, i]:.1f} h (limit {lim1[a, i]:.1f})"))
    return jump


def _persistence_runs(sel: np.ndarray, rows: np.ndarray, x: np.ndarray, p1x: np.ndarray, fpos: np.ndarray,
                      c: np.ndarray, events: list[tuple[int, int, int, str]]) -> np.ndarray:
    """The persistence check of :func:`_series_checks`: the run of identical values (element, report), continuing
    the context's run at a station's first report (``fpos``); 0 for ignored values."""
    ks = _S_K[sel]
    n_el, m = x.shape
    ign = _S_IGNORE[sel]
    ignored = x == ign[:, :1]
    for col in range(1, ign.shape[1]):
        ignored |= x == ign[:, col:col + 1]
    if _S_NO_RUN[sel].any():
        ignored |= _S_NO_RUN[sel][:, None]
    same = (x == p1x) & ~ignored
    seg_start = ~same
    seg_start[:, fpos] = True
    # flat positions: each element's row starts a segment (position 0 is a first report), so one running maximum
    # per row gives the flat start of each report's segment
    pos_idx = np.arange(n_el * m).reshape(n_el, m)
    seg_first = np.maximum.accumulate(np.where(seg_start, pos_idx, 0), axis=1)
    run = (pos_idx - seg_first).astype("float64") + 1.0
    cont = same[:, fpos]
    if cont.any():
        extra = np.zeros((n_el, m))
        extra[:, fpos] = np.where(cont, c[..., 5], 0.0)
        run += extra.take(seg_first)
    run[ignored] = 0.0
    hit = run >= _S_RUN[sel][:, None]
    if hit.any():
        for a, i in zip(*np.nonzero(hit), strict=True):
            events.append((int(ks[a]), 1, int(rows[i]),
                           f"persistence: same value {x[a, i]:g} in {int(run[a, i])} consecutive reports"))
    return run


def _f(v: Any) -> float:
    try:
        return float(v) if v is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def _nan_none(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def _anomaly(models: Mapping[str, AnomalyModel], uniq: list[str], inv: np.ndarray, t: np.ndarray,
             vals: dict[str, np.ndarray], valid: np.ndarray, flags: dict[int, dict[str, str]]) -> None:
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
                _add(flags.setdefault(i, {}), fs[k], f"anomaly: Mahalanobis d2 {d2[j]:.1f} > {thr[j]:.1f} "
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
    sid, t, v, hard = _read_one(r)
    per, pr = v["precip_period_h"], v["precip_mm"]
    dur = per if math.isfinite(per) and per > 0 else DEFAULT_PRECIP_PERIOD_H
    envelope = JENNINGS_MM * max(dur, 1.0 / 60.0) ** JENNINGS_EXP
    if pr > envelope:
        hard = hard or f"precip_mm: {pr:g} mm above the world-record envelope ({envelope:.0f} mm in {dur:g} h)"
    if hard is not None:
        res.hard_fail = hard
        return
    flags = res.flags
    _flag_one_soft_ranges(v, float(elevations.get(sid, 0.0) or 0.0) / 1000.0, flags)
    if pr > PRECIP_SOFT_FRACTION * envelope:
        _add(flags, "precip_mm", f"range: {pr:g} mm > {PRECIP_SOFT_FRACTION * envelope:.0f} mm in {dur:g} h")
    _flag_one_inconsistencies(v, flags)
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
        _flag_one_anomaly(am, v, t, flags)


def _read_one(r: Mapping[str, Any]) -> tuple[str, float, dict[str, float], str | None]:
    """(station id or "", epoch seconds or NaN, value per element with NaN for missing or unusable, the first
    identity/time/value/hard-limit failure or None) of one report."""
    hard: str | None = None
    sid = _station_id(r.get("station_id")) or ""
    if not sid:
        hard = "station_id: missing or not a string"
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
    return sid, t, v, hard


def _flag_one_soft_ranges(v: Mapping[str, float], elev_km: float, flags: dict[str, str]) -> None:
    """Soft range of one report; the upper bound of temperatures and the lower of pressure follow the elevation."""
    for e, (lo, hi) in RANGE_LIMITS.items():
        if e in ("precip_mm", "precip_period_h"):
            continue
        x = v[e]
        if e == "pressure_hpa":
            lo_a = lo * float(_pressure_ratio(np.array(elev_km * 1000.0))) - 10.0
            hi_a = hi
        else:
            lo_a, hi_a = lo, hi + RANGE_LAPSE_PER_KM.get(e, 0.0) * elev_km
        if x < lo_a or x > hi_a:
            _add(flags, e, f"range: {x:g} outside [{lo_a:.1f}, {hi_a:.1f}]")


def _flag_one_inconsistencies(v: Mapping[str, float], flags: dict[str, str]) -> None:
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


def _flag_one_anomaly(am: AnomalyModel, v: Mapping[str, float], t: float, flags: dict[str, str]) -> None:
    """Score one report with its station's model: per kind (sub-daily, daily), the richest feature set whose
    elements are all present."""
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
