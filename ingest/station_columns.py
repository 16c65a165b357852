"""Per-partition station state as numpy columns: the worker's hot path (issue 8).

The same state and quantities as :mod:`ingest.quantities` (the readable per-report reference, which the
property tests compare this module against), kept as arrays indexed by a station slot so that a batch of reports
is folded in with a few vectorised operations instead of per-report dict copies:

* ``t`` (last report, epoch s); the latest instantaneous values (``now``: visibility, wind, RH);
* hourly rainfall in a 24-bucket ring by hour index, ``hour_end`` its newest hour;
* daily extremes of the last 3 Beijing days in a ring by day ordinal (tmax, tmin, ground tmin, wind, gust, rain);
* the once-a-day inputs, each its own ring advanced only when a value is written (so it holds the N most recent
  days, as the reference keeps the N most recent keys): daily rain 150 days, Hargreaves PET 30, daily mean
  temperature 33 (EHF), MCI 40.

A station that reports twice in one batch is handled in rounds (its k-th report in round k), so every report is
graded on the state as of that report, exactly as one-by-one. State is encoded in blocks of ``BLOCK`` slots
(``encode_block``): a few hundred bytes per station (the per-report part) and ~2 KB (the daily part) instead of
JSON dicts with date keys; ``ingest.partition_state`` decides when they are written.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from typing import Any

import numpy as np
import orjson

from ingest.quantities import (
    API_DAYS,
    CALM_WIND_MS,
    DROUGHT_PROCESS_END_DAYS,
    DROUGHT_PROCESS_MIN_DAYS,
    EHF_DAYS,
    KEEP_DAYS,
    KEEP_HOURS,
    MCI_KEEP_DAYS,
    MCI_PET_DAYS,
    MCI_PRECIP_DAYS,
    RAIN_WINDOWS_H,
    day_shift_s,
    drought_process_days,
)

NONE = -(1 << 40)  # "no day/hour yet" for ring ends
EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
BLOCK = 256  # slots per stored block: the daily part is ~2 KB a station, blocks stay well under 1 MB
DAY_FIELDS = ("tmax", "tmin", "gtmin", "wmax", "gmax", "rain")
TMAX, TMIN, GTMIN, WMAX, GMAX, RAIN = range(6)
NOW_FIELDS = ("visibility_m", "wind_ms", "rh_pct")
# (array name, dtype, per-slot shape, fill): the per-report part and the once-a-day part
FAST: tuple[tuple[str, str, tuple[int, ...], float], ...] = (
    ("t", "f8", (), -math.inf),
    ("hour_end", "i8", (), NONE),
    ("rain_h", "f8", (KEEP_HOURS,), 0.0),
    ("has_hours", "u1", (), 0),
    ("day_end", "i8", (), NONE),
    ("day", "f8", (KEEP_DAYS, len(DAY_FIELDS)), math.nan),
    ("now", "f8", (len(NOW_FIELDS),), math.nan),
)
DAILY: tuple[tuple[str, str, tuple[int, ...], float], ...] = (
    ("pd", "f8", (MCI_PRECIP_DAYS,), math.nan), ("pd_end", "i8", (), NONE),
    ("pe", "f8", (MCI_PET_DAYS,), math.nan), ("pe_end", "i8", (), NONE),
    ("m", "f8", (EHF_DAYS,), math.nan), ("m_end", "i8", (), NONE),
    ("mci", "f8", (MCI_KEEP_DAYS,), math.nan), ("mci_end", "i8", (), NONE),
)
QUANTITY_NAMES = (*(f"rain_{n}h" for n in RAIN_WINDOWS_H), "api_mm", "tmax_day", "tmin_day", "ground_tmin_day",
                  "tmin_drop_24h", "tmin_drop_48h", "wind_max_day", "gust_max_day", "visibility", "wind_now", "rh_now",
                  "mci_day", "drought_run_days", "ehf_severity")
_Q = {name: k for k, name in enumerate(QUANTITY_NAMES)}
Q_RAIN = slice(_Q["rain_1h"], _Q["rain_1h"] + len(RAIN_WINDOWS_H))
Q_NOW = slice(_Q["visibility"], _Q["visibility"] + len(NOW_FIELDS))  # visibility, wind_now, rh_now
Q_API, Q_TMAX, Q_TMIN, Q_GTMIN = _Q["api_mm"], _Q["tmax_day"], _Q["tmin_day"], _Q["ground_tmin_day"]
Q_DROP24, Q_DROP48, Q_WMAX, Q_GMAX = _Q["tmin_drop_24h"], _Q["tmin_drop_48h"], _Q["wind_max_day"], _Q["gust_max_day"]
Q_MCI, Q_DROUGHT, Q_EHF = _Q["mci_day"], _Q["drought_run_days"], _Q["ehf_severity"]
assert QUANTITY_NAMES[Q_RAIN] == tuple(f"rain_{n}h" for n in RAIN_WINDOWS_H)
assert QUANTITY_NAMES[Q_NOW] == ("visibility", "wind_now", "rh_now")
# the observation elements a batch update reads
UPDATE_ELEMENTS = ("tmax_c", "tmin_c", "air_temp_c", "ground_tmin_c", "wind_ms", "gust_ms", "precip_mm",
                   "precip_period_h", *NOW_FIELDS)
_HOURS_BACK = (np.arange(KEEP_HOURS)[None, :] - np.arange(KEEP_HOURS)[:, None]) % KEEP_HOURS  # [k, end % 24] -> pos
_WINDOW_ROWS = np.array(RAIN_WINDOWS_H) - 1
_API_BACK = np.arange(1, API_DAYS)


@dataclass(frozen=True)
class SlotInfo:
    """What a station's quantities need from outside the reports: latitude (PET) and climatology thresholds."""

    latitude: float = 36.0
    t95: float | None = None
    ehf85: float | None = None


@lru_cache(maxsize=8192)
def iso_day(ordinal: int) -> str:
    return date.fromordinal(ordinal).isoformat()


@lru_cache(maxsize=8)
def _api_weights(api_decay: float) -> np.ndarray:
    """k^i for the completed days i = 1 .. API_DAYS - 1 (Python powers, as the reference)."""
    return np.array([api_decay ** i for i in range(1, API_DAYS)])


@lru_cache(maxsize=8192)
def month_of(ordinal: int) -> int:
    return date.fromordinal(ordinal).month


def _ring_advance(ring: np.ndarray, end: np.ndarray, slots: np.ndarray, new_end: np.ndarray, fill: float) -> None:
    """Move the rings of ``slots`` forward to ``new_end`` (>= their end): positions of the skipped and new
    days/hours are cleared, so a ring always holds exactly (end - size, end]."""
    size = ring.shape[1]
    # the units old+1 .. new_end (at most a whole ring) are cleared: usually one per station, so index them
    # rather than build a [stations, size] mask
    k = new_end - end[slots]
    top = int(k.max()) if k.size else 0
    if top == 1:
        one = k == 1
        ring[slots[one], new_end[one] % size] = fill
    elif top > 1:
        k = np.minimum(np.maximum(k, 0), size)
        back = np.arange(int(k.sum())) - np.repeat(np.cumsum(k) - k, k)  # 0 .. k-1 per station
        ring[np.repeat(slots, k), (np.repeat(new_end, k) - back) % size] = fill
    end[slots] = new_end


def _ring_write(ring: np.ndarray, end: np.ndarray, slots: np.ndarray, unit: np.ndarray, values: np.ndarray) -> None:
    """Write ``values`` at day ``unit`` (> end) into the rings of ``slots``."""
    if slots.size == 0:
        return
    _ring_advance(ring, end, slots, unit, math.nan)
    ring[slots, unit % ring.shape[1]] = values


def _ring_window(ring: np.ndarray, end: np.ndarray, slots: np.ndarray, last: np.ndarray, n: int,
                 fill: float = math.nan) -> np.ndarray:
    """[rows, n] values of days last-n+1 .. last (oldest first), ``fill`` outside the ring's window."""
    size = ring.shape[1]
    units = last[:, None] - np.arange(n - 1, -1, -1)
    e = end[slots][:, None]
    ok = (units <= e) & (units > e - size)
    return np.where(ok, ring[slots[:, None], units % size], fill)


class StationColumns:
    """The state of the stations of one partition. ``info(station_id)`` gives a new slot's SlotInfo;
    ``mci_params(station_id)`` the station's MCI parameters (or None) when a day completes."""

    def __init__(self, info: Callable[[str], SlotInfo] | None = None,
                 mci_params: Callable[[str], Any] | None = None) -> None:
        self.info = info or (lambda sid: SlotInfo())
        self.mci_params = mci_params
        self.station_ids: list[str] = []
        self.slot_of: dict[str, int] = {}
        self.arrays: dict[str, np.ndarray] = {}
        for name, dtype, shape, fill in (*FAST, *DAILY):
            self.arrays[name] = np.full((0, *shape), fill, dtype=dtype)
        self.latitude = np.zeros(0)
        self.t95 = np.zeros(0)
        self.ehf85 = np.zeros(0)
        self.ehf_stations = False  # any slot with EHF thresholds (t95 and ehf85)
        self._per_slot: dict[Any, np.ndarray] = {}
        self._settings: tuple[float, tuple[int, int]] = (CALM_WIND_MS, (DROUGHT_PROCESS_MIN_DAYS,
                                                                        DROUGHT_PROCESS_END_DAYS))

    def __len__(self) -> int:
        return len(self.station_ids)

    def copy(self) -> StationColumns:
        """An independent copy (the per-report fallback keeps one to undo a report that failed half-way)."""
        out = StationColumns(self.info, self.mci_params)
        out.station_ids, out.slot_of = list(self.station_ids), dict(self.slot_of)
        out.arrays = {k: v.copy() for k, v in self.arrays.items()}
        out.latitude, out.t95, out.ehf85 = self.latitude.copy(), self.t95.copy(), self.ehf85.copy()
        out.ehf_stations = self.ehf_stations
        return out

    # ---- slots ------------------------------------------------------------------------------------------
    def slots(self, station_ids: Iterable[str]) -> np.ndarray:
        """Slot of each station, adding new ones."""
        ids = station_ids if isinstance(station_ids, list) else list(station_ids)
        try:
            return np.fromiter(map(self.slot_of.__getitem__, ids), dtype=np.int64, count=len(ids))
        except KeyError:
            return np.array([self.slot_of[s] if s in self.slot_of else self._add(s) for s in ids], dtype=np.int64)

    def per_slot(self, key: Any, value: Callable[[str], float]) -> np.ndarray:
        """``value(station_id)`` of every slot (float64, by slot), computed once per station and ``key``: a
        caller's per-station constants (e.g. a threshold scale) as an array that a batch's slots index."""
        have = self._per_slot.get(key)
        if have is None or have.size < len(self.station_ids):
            more = np.array([value(sid) for sid in self.station_ids[0 if have is None else have.size:]], dtype=float)
            have = self._per_slot[key] = more if have is None else np.concatenate([have, more])
        return have

    def _add(self, sid: str) -> int:
        slot = len(self.station_ids)
        self.station_ids.append(sid)
        self.slot_of[sid] = slot
        if slot >= self.arrays["t"].shape[0]:
            grow = max(16, slot)
            for name, dtype, shape, fill in (*FAST, *DAILY):
                a = self.arrays[name]
                self.arrays[name] = np.concatenate([a, np.full((grow, *shape), fill, dtype=dtype)])
            self.latitude = np.concatenate([self.latitude, np.full(grow, 36.0)])
            self.t95 = np.concatenate([self.t95, np.full(grow, np.nan)])
            self.ehf85 = np.concatenate([self.ehf85, np.full(grow, np.nan)])
        info = self.info(sid)
        self.latitude[slot] = info.latitude
        self.t95[slot] = np.nan if info.t95 is None else info.t95
        self.ehf85[slot] = np.nan if not info.ehf85 else info.ehf85  # 0 or None: no EHF product (as the reference)
        self.ehf_stations = self.ehf_stations or not (math.isnan(self.t95[slot]) or math.isnan(self.ehf85[slot]))
        return slot

    # ---- one batch --------------------------------------------------------------------------------------
    def apply(self, station_ids: list[str], t: np.ndarray, values: dict[str, np.ndarray], *,
              api_decay: float, ground_offset_c: float, calm_wind_ms: float = CALM_WIND_MS,
              drought_process: tuple[int, int] = (DROUGHT_PROCESS_MIN_DAYS, DROUGHT_PROCESS_END_DAYS)) -> Applied:
        """Fold a batch (arrival order) into the state. Returns which reports were applied (not stale), every
        quantity per report as of that report, and what a consecutive-day condition needs. ``api_decay`` and
        ``ground_offset_c``, ``calm_wind_ms``, ``drought_process``: the rules' settings, as
        ``quantities.station_quantities``."""
        self._settings = (calm_wind_ms, drought_process)
        n = len(station_ids)
        slots = self.slots(station_ids)
        hour = np.floor_divide(t, 3600).astype(np.int64)
        day = (np.floor_divide(t + day_shift_s(), 86400).astype(np.int64) + EPOCH_ORDINAL)  # by the day boundary
        q = np.full((len(QUANTITY_NAMES), n), np.nan)
        applied = np.zeros(n, dtype=bool)
        rings: list[tuple[slice | np.ndarray, np.ndarray]] = []  # (reports, their 3-day rings) per round
        # Reports reordered round by round (a station's k-th report in round k, arrival order within a round),
        # so that every round is a slice of the reordered columns: views instead of a gather per column.
        order, bounds = _round_order(slots)
        rv = {e: values[e] for e in UPDATE_ELEMENTS}
        rv["now"] = np.stack([values[el] for el in NOW_FIELDS], axis=1)  # [reports, NOW_FIELDS]
        if order is None:
            rs, rt, rh, rd = slots, t, hour, day
        else:
            rs, rt, rh, rd = slots[order], t[order], hour[order], day[order]
            rv = {e: v[order] for e, v in rv.items()}
        for lo, hi in bounds:
            s = rs[lo:hi]
            fresh = rt[lo:hi] > self.arrays["t"][s]
            rows: slice | np.ndarray = slice(lo, hi)
            if not fresh.all():
                rows, s = np.flatnonzero(fresh) + lo, s[fresh]
                if s.size == 0:
                    continue
            applied[rows] = True
            self._update(s, rt[rows], rh[rows], rd[rows], {e: v[rows] for e, v in rv.items()})
            out = q[:, rows]  # a view when rows is a slice, else a copy written back below
            ring = self._quantities(s, rh[rows], rd[rows], out, api_decay, ground_offset_c)
            rings.append((rows if order is None else order[rows], ring))
            if not isinstance(rows, slice):
                q[:, rows] = out
        if order is not None:  # back to arrival order
            q[:, order], applied[order] = q.copy(), applied.copy()
        return Applied(slots, applied, dict(zip(QUANTITY_NAMES, q, strict=True)), day, ground_offset_c, rings,
                       calm_wind_ms=calm_wind_ms)

    def _update(self, s: np.ndarray, t: np.ndarray, hour: np.ndarray, d: np.ndarray,
                v: dict[str, np.ndarray]) -> None:
        """Fold one round (each station at most once; every argument per report of the round) into the state."""
        a = self.arrays
        day_end = a["day_end"]
        old_end = day_end[s]
        new_day = d > old_end
        if new_day.any():
            completing = new_day & (old_end != NONE)
            if completing.any():
                self._complete_days(s[completing], old_end[completing])
            _ring_advance(a["day"], day_end, s[new_day], d[new_day], math.nan)
        pos = d % KEEP_DAYS
        cur = a["day"][s, pos]  # [rows, fields]
        with np.errstate(invalid="ignore"):
            cur[:, TMAX] = np.fmax(np.fmax(cur[:, TMAX], v["tmax_c"]), v["air_temp_c"])
            cur[:, TMIN] = np.fmin(np.fmin(cur[:, TMIN], v["tmin_c"]), v["air_temp_c"])
            cur[:, GTMIN] = np.fmin(cur[:, GTMIN], v["ground_tmin_c"])
            cur[:, WMAX] = np.fmax(cur[:, WMAX], v["wind_ms"])
            cur[:, GMAX] = np.fmax(cur[:, GMAX], v["gust_ms"])
        rain = v["precip_mm"]
        wet = ~np.isnan(rain)
        day_rain = cur[:, RAIN]
        # (values are finite, ingest checks them: NaN -> 0 is all np.nan_to_num would do, at a fifth of the cost)
        cur[:, RAIN] = np.where(wet, np.where(np.isnan(day_rain), 0.0, day_rain) + rain, day_rain)
        a["day"][s, pos] = cur
        if wet.any():  # rain spread evenly over the p hours ending at the report (quantities.update_station)
            all_wet = bool(wet.all())
            ws, wh, amount = (s, hour, rain) if all_wet else (s[wet], hour[wet], rain[wet])
            ph = v["precip_period_h"] if all_wet else v["precip_period_h"][wet]
            # (np.rint: np.round to whole numbers, half to even, without np.round's Python overhead)
            period = np.maximum(1.0, np.rint(np.where(np.isnan(ph) | (ph == 0), 1.0, ph)))
            hour_end = a["hour_end"]
            _ring_advance(a["rain_h"], hour_end, ws, np.maximum(wh, hour_end[ws]), 0.0)
            share = amount / period
            a["rain_h"][ws, wh % KEEP_HOURS] += share  # the report's own hour (period >= 1)
            for i in range(1, int(min(period.max(), KEEP_HOURS))):
                m = period > i
                a["rain_h"][ws[m], (wh[m] - i) % KEEP_HOURS] += share[m]
            a["has_hours"][ws] = 1
        x = v["now"]  # [rows, NOW_FIELDS]: a missing value keeps the last one
        a["now"][s] = np.where(np.isnan(x), a["now"][s], x)
        a["t"][s] = t

    def _complete_days(self, s: np.ndarray, done: np.ndarray) -> None:
        """quantities.complete_day for many stations: fold each station's last day into the daily rings."""
        a = self.arrays
        day = a["day"][s, done % KEEP_DAYS]
        tx, tn, rain = day[:, TMAX], day[:, TMIN], day[:, RAIN]
        both = ~np.isnan(tx) & ~np.isnan(tn)
        # EHF's daily mean of the day before: its maximum with the following night's (this day's) minimum (Nairn &
        # Fawcett 2015; quantities.complete_day); the ring still holds that day (day_end == done)
        tx_before = a["day"][s, (done - 1) % KEEP_DAYS, TMAX]
        paired = ~np.isnan(tx_before) & ~np.isnan(tn)
        _ring_write(a["m"], a["m_end"], s[paired], done[paired] - 1, (tx_before[paired] + tn[paired]) / 2)
        wet = ~np.isnan(rain)
        _ring_write(a["pd"], a["pd_end"], s[wet], done[wet], rain[wet])
        if both.any():
            from indices.drought import pet_hargreaves

            bs, bd = s[both], done[both]
            pe = np.empty(bs.size)
            for ordinal in np.unique(bd).tolist():  # one call per calendar day (usually one)
                g = bd == ordinal
                when = np.array([iso_day(ordinal)], dtype="datetime64[D]")
                pe[g] = np.asarray(pet_hargreaves(tn[both][g][:, None], tx[both][g][:, None], self.latitude[bs[g]],
                                                  when))[:, 0]
            _ring_write(a["pe"], a["pe_end"], bs, bd, pe)
        if self.mci_params is not None:
            self._mci(s, done)

    def _mci(self, s: np.ndarray, done: np.ndarray) -> None:
        a = self.arrays
        ready = (a["pd_end"][s] == done) & (a["pe_end"][s] == done)
        if not ready.any():
            return
        from indices.drought import daily_slot, mci_from_params

        rs, rd = s[ready], done[ready]
        # the rain ring ends on the day just done, so its window is the whole ring: full where it has no gap
        full = ~np.isnan(a["pd"][rs]).any(axis=1)
        if not full.any():
            return
        rs, rd = rs[full], rd[full]
        p = _ring_window(a["pd"], a["pd_end"], rs, rd, MCI_PRECIP_DAYS)
        e = _ring_window(a["pe"], a["pe_end"], rs, rd, MCI_PET_DAYS)
        for i in range(rs.size):
            slot, ordinal = int(rs[i]), int(rd[i])
            assert self.mci_params is not None
            params = self.mci_params(self.station_ids[slot])
            if params is None:
                continue
            v = float(np.asarray(mci_from_params(p[i], e[i], month_of(ordinal), daily_slot(iso_day(ordinal)),
                                                 params)))
            if math.isfinite(v):
                _ring_write(a["mci"], a["mci_end"], np.array([slot]), np.array([ordinal]), np.array([v]))

    def _quantities(self, s: np.ndarray, hour: np.ndarray, today: np.ndarray, q: np.ndarray, api_decay: float,
                    ground_offset_c: float) -> np.ndarray:
        """quantities.station_quantities for the reports of one round (each its station's latest), into
        ``q`` [QUANTITY_NAMES, rows] (left NaN where not available). Returns the 3-day rings of ``s``
        [rows, days, fields] as of these reports."""
        a = self.arrays
        rows = s.size
        ring = a["day"][s]  # [rows, days, fields], one gather for every daily read below
        day_end = a["day_end"][s]
        d0 = int(today[0])
        one_day = bool((today == d0).all() and (day_end == d0).all())
        if one_day:  # the usual round: one day, and each ring ends on it
            cur, y1, y2 = ring[:, d0 % KEEP_DAYS], ring[:, (d0 - 1) % KEEP_DAYS], ring[:, (d0 - 2) % KEEP_DAYS]
        else:
            at = np.arange(rows)
            cur = ring[at, today % KEEP_DAYS]
            y1, y2 = (np.where((today - k <= day_end) & (today - k > day_end - KEEP_DAYS),
                               ring[at, (today - k) % KEEP_DAYS].T, np.nan).T for k in (1, 2))
        tmin = cur[:, TMIN]
        q[Q_TMAX] = cur[:, TMAX]
        q[Q_TMIN] = tmin
        q[Q_WMAX] = cur[:, WMAX]
        q[Q_GMAX] = cur[:, GMAX]
        calm_wind_ms, (min_days, end_days) = self._settings
        windy = cur[:, WMAX] > calm_wind_ms  # False where not reported: quantities.ground_tmin
        q[Q_GTMIN] = np.where(np.isnan(cur[:, GTMIN]), np.where(windy, np.nan, tmin - ground_offset_c),
                              cur[:, GTMIN])
        q[Q_DROP24] = y1[:, TMIN] - tmin
        q[Q_DROP48] = np.fmax(y1[:, TMIN], y2[:, TMIN]) - tmin
        has = a["has_hours"][s].astype(bool)
        if has.all():
            q[Q_RAIN] = self._rain_windows(s, hour)
        elif has.any():
            q[Q_RAIN][:, has] = self._rain_windows(s[has], hour[has])
        self._api(s, today, d0 if one_day else None, cur[:, RAIN], y1[:, RAIN], y2[:, RAIN], q, api_decay)
        q[Q_NOW] = a["now"][s].T
        mci_end = a["mci_end"][s]
        has_mci = mci_end != NONE
        if has_mci.any():
            ms, me = s[has_mci], mci_end[has_mci]
            hist = _ring_window(a["mci"], a["mci_end"], ms, me, MCI_KEEP_DAYS)  # oldest first
            q[Q_MCI, has_mci] = hist[:, -1]
            q[Q_DROUGHT, has_mci] = [drought_process_days(row, min_days, end_days) for row in hist.tolist()]
        if self.ehf_stations:  # only with thresholds for some station of the partition
            ehf_on = ~np.isnan(self.t95[s]) & ~np.isnan(self.ehf85[s]) & (a["m_end"][s] != NONE)
            if ehf_on.any():
                from indices.heat import excess_heat_factor

                es = s[ehf_on]
                means = _ring_window(a["m"], a["m_end"], es, a["m_end"][es], EHF_DAYS)
                full = ~np.isnan(means).any(axis=1)
                if full.any():
                    ehf = np.asarray(excess_heat_factor(means[full], self.t95[es[full]], align="end"))[:, -1]
                    target = np.flatnonzero(ehf_on)[full]
                    q[Q_EHF, target] = np.where(np.isfinite(ehf), ehf / self.ehf85[es[full]], np.nan)
        return ring

    def _rain_windows(self, s: np.ndarray, hour: np.ndarray) -> np.ndarray:
        """[RAIN_WINDOWS_H, rows] rolling rain sums ending at ``hour``, summed newest hour first as the reference."""
        a = self.arrays
        hour_end = a["hour_end"][s]
        lag = hour - hour_end  # hours since the ring's newest hour: those newest hours of a window are 0
        if lag.min() < 0:  # (never from reports in time order) the general window
            window = _ring_window(a["rain_h"], a["hour_end"], s, hour, KEEP_HOURS, 0.0)[:, ::-1]  # newest first
            return np.cumsum(window, axis=1)[:, np.array(RAIN_WINDOWS_H) - 1].T
        # [hours back from the ring's end, rows]: one flat gather, then running sums newest first (adding the
        # rows of the transposed layout is sequential, as the reference's loop, and much faster than cumsum)
        end = hour_end % KEEP_HOURS
        back = _HOURS_BACK[:, end[0], None] if (end == end[0]).all() else _HOURS_BACK[:, end]  # [k, 1 or rows]
        ring = a["rain_h"].reshape(-1).take(s * KEEP_HOURS + back)
        sums = np.empty((KEEP_HOURS, s.size))
        total = sums[0] = ring[0]
        for k in range(1, KEEP_HOURS):
            total = sums[k] = total + ring[k]
        if not lag.any():
            return sums[_WINDOW_ROWS]
        # a window of n hours has n - lag hours of the ring (0 when none)
        back = _WINDOW_ROWS[:, None] - lag
        return np.where(back >= 0, sums[np.maximum(back, 0), np.arange(s.size)], 0.0)

    def _api(self, s: np.ndarray, today: np.ndarray, one_day: int | None, rain0: np.ndarray, rain1: np.ndarray,
             rain2: np.ndarray, q: np.ndarray, api_decay: float) -> None:
        """API = today's rain + sum_i k^i P_(today-i), P from the daily rain ring, else (for the last 2 days)
        the 3-day ring; added term by term in the reference's order, so the floats agree exactly. ``one_day``:
        the day of every report, if they share one."""
        a = self.arrays
        pd_end = a["pd_end"][s]
        pd_any = pd_end != NONE
        api_on = ~np.isnan(rain0) | pd_any
        if not api_on.any():
            return
        terms = np.empty((API_DAYS, s.size))  # [today - i, rows]
        terms[0] = rain0
        if pd_any.any():
            # day today - i is in the ring when 0 <= end - (today - i) < size, i.e. lag <= i < lag + size
            pos = ((one_day - _API_BACK) % MCI_PRECIP_DAYS)[:, None] if one_day is not None else \
                (today - _API_BACK[:, None]) % MCI_PRECIP_DAYS
            terms[1:] = a["pd"].reshape(-1).take(s * MCI_PRECIP_DAYS + pos)
            lag = today - pd_end
            if not (lag == 1).all():  # (all there when every ring ends yesterday, the usual case)
                back = _API_BACK[:, None]
                terms[1:] = np.where((back >= lag) & (back < lag + MCI_PRECIP_DAYS), terms[1:], np.nan)
        else:
            terms[1:] = np.nan
        for i, r in ((1, rain1), (2, rain2)):
            terms[i] = np.where(np.isnan(terms[i]), r, terms[i])
        terms[np.isnan(terms)] = 0.0  # missing or no rain: adding 0 * k^i leaves the sum as it is
        terms[1:] *= _api_weights(api_decay)[:, None]
        api = terms[0]
        for i in range(1, API_DAYS):
            api = api + terms[i]
        q[Q_API] = np.where(api_on, api, np.nan)

    # ---- views ------------------------------------------------------------------------------------------
    def daily_precip(self, station_id: str) -> dict[str, float]:
        """The station's daily precipitation totals kept for MCI (ISO date -> mm), for the SPI product."""
        return daily_ring(self, station_id, "pd")

    # ---- storage ----------------------------------------------------------------------------------------
    def blocks(self) -> int:
        return (len(self) + BLOCK - 1) // BLOCK

    def encode_block(self, block: int, part: str) -> bytes:
        """Bytes of slots [block * BLOCK, ...) of the ``fast`` or ``daily`` arrays: a length-prefixed JSON
        header (station ids, array layout) and the raw little-endian buffers."""
        lo, hi = block * BLOCK, min((block + 1) * BLOCK, len(self))
        spec = FAST if part == "fast" else DAILY
        bufs = [np.ascontiguousarray(self.arrays[name][lo:hi]).astype(f"<{dtype}", copy=False).tobytes()
                for name, dtype, _, _ in spec]
        header = orjson.dumps({"v": 1, "part": part, "ids": self.station_ids[lo:hi]})
        return struct.pack("<I", len(header)) + header + b"".join(bufs)

    def load_block(self, block: int, data: bytes) -> None:
        """Restore a block written by ``encode_block`` (any part). Raises ValueError on bytes that are not one."""
        try:
            (hlen,) = struct.unpack_from("<I", data, 0)
            header = orjson.loads(data[4:4 + hlen])
            ids, part = header["ids"], header["part"]
            if header.get("v") != 1 or part not in ("fast", "daily") or not isinstance(ids, list):
                raise ValueError("unknown layout")
        except (struct.error, orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"not a station-state block: {exc}") from None
        spec = FAST if part == "fast" else DAILY
        n = len(ids)
        expected = 4 + hlen + sum(n * int(np.prod(shape, dtype=np.int64)) * np.dtype(dt).itemsize
                                  for _, dt, shape, _ in spec)
        if len(data) != expected:
            raise ValueError(f"station-state block: {len(data)} bytes, expected {expected}")
        slots = self.slots([str(x) for x in ids])
        if slots.tolist() != list(range(block * BLOCK, block * BLOCK + n)):
            raise ValueError("station-state block does not line up with the slots already loaded")
        off = 4 + hlen
        for name, dt, shape, _ in spec:
            size = n * int(np.prod(shape, dtype=np.int64)) * np.dtype(dt).itemsize
            self.arrays[name][slots] = np.frombuffer(data, dtype=f"<{dt}", count=size // np.dtype(dt).itemsize,
                                                     offset=off).reshape((n, *shape))
            off += size


def _round_order(slots: np.ndarray) -> tuple[np.ndarray | None, list[tuple[int, int]]]:
    """Rounds so that no station appears twice in a round (its k-th report in round k): the row order that
    puts round after round, arrival order within each (None: no station repeats, one round), and each
    round's [lo, hi) in that order."""
    n = slots.size
    if n == 0:
        return None, []
    # (int16 keys, when slots fit, for numpy's radix sort)
    order = np.argsort(slots.astype(np.int16) if slots.max() < 1 << 15 else slots, kind="stable")
    ss = slots[order]
    start = np.ones(n, dtype=bool)
    start[1:] = ss[1:] != ss[:-1]
    if start.all():
        return None, [(0, n)]
    idx = np.arange(n)
    occ = np.empty(n, dtype=np.int64)
    occ[order] = idx - np.maximum.accumulate(np.where(start, idx, 0))
    ends = np.cumsum(np.bincount(occ))
    by_round = np.concatenate([np.flatnonzero(occ == k) for k in range(ends.size)]) if ends.size <= 4 else \
        np.argsort(occ, kind="stable")
    return by_round, list(zip([0, *ends[:-1].tolist()], ends.tolist(), strict=True))


@dataclass
class Applied:
    """What ``StationColumns.apply`` did to a batch."""

    slots: np.ndarray
    applied: np.ndarray  # bool per report: False = not newer than the station's last report (stale)
    quantities: dict[str, np.ndarray]  # per report, as of that report (NaN = not available)
    day: np.ndarray  # Beijing day ordinal per report
    ground_offset_c: float
    rings: list[tuple[slice | np.ndarray, np.ndarray]] = field(default_factory=list)  # (reports, rings) per round
    _day_rings: np.ndarray | None = None
    calm_wind_ms: float = CALM_WIND_MS

    @property
    def day_rings(self) -> np.ndarray:
        """[reports, KEEP_DAYS, fields]: the 3-day ring as of each report (NaN if not applied); assembled when
        first needed (a multi-day condition), which few batches are."""
        if self._day_rings is None:
            self._day_rings = np.full((self.day.size, KEEP_DAYS, len(DAY_FIELDS)), np.nan)
            for reports, ring in self.rings:
                self._day_rings[reports] = ring
        return self._day_rings

    def series(self, i: int, quantity: str) -> dict[str, float]:
        """Per-day values of a daily quantity as of report i (quantities.daily_series)."""
        k = {"tmax_day": TMAX, "tmin_day": TMIN, "wind_max_day": WMAX, "gust_max_day": GMAX,
             "ground_tmin_day": GTMIN}[quantity]
        today = int(self.day[i])
        out: dict[str, float] = {}
        for back in range(KEEP_DAYS):
            u = today - back
            row = self.day_rings[i, u % KEEP_DAYS]
            v = row[k]
            if v != v and quantity == "ground_tmin_day" and not row[WMAX] > self.calm_wind_ms:
                v = row[TMIN] - self.ground_offset_c
            if v == v:
                out[iso_day(u)] = float(v)
        return out


def daily_ring(cols: StationColumns, station_id: str, name: str) -> dict[str, float]:
    """A once-a-day ring of the station (``pd`` rain, ``pe`` PET, ``m`` daily means, ``mci``) as ISO date ->
    value, missing days left out."""
    slot = cols.slot_of.get(station_id)
    if slot is None or cols.arrays[f"{name}_end"][slot] == NONE:
        return {}
    end = int(cols.arrays[f"{name}_end"][slot])
    ring = cols.arrays[name]
    size = ring.shape[1]
    out = {}
    for u in range(end - size + 1, end + 1):
        v = ring[slot, u % size]
        if v == v:
            out[iso_day(u)] = float(v)
    return out


def drought_inputs(cols: StationColumns, station_id: str) -> dict[str, dict[str, float]]:
    """What the drought signal's forecast branch continues (``warning.forecast_run.drought_days``): the
    station's daily rain (150 days), PET (30) and MCI (40) rings."""
    return {name: daily_ring(cols, station_id, name) for name in ("pd", "pe", "mci")}


def observed_days(cols: StationColumns, station_id: str) -> dict[str, dict[str, float]]:
    """The station's daily extremes of its last KEEP_DAYS days (ISO day -> {tmax, tmin, gtmin, wmax, gmax,
    rain}, missing fields left out), the form ``quantities.day_quantities`` reads: what a forecast run
    starting today is combined with."""
    slot = cols.slot_of.get(station_id)
    if slot is None or cols.arrays["day_end"][slot] == NONE:
        return {}
    end = int(cols.arrays["day_end"][slot])
    out: dict[str, dict[str, float]] = {}
    for u in range(end - KEEP_DAYS + 1, end + 1):
        row = cols.arrays["day"][slot, u % KEEP_DAYS]
        fields = {f: float(v) for f, v in zip(DAY_FIELDS, row.tolist(), strict=True) if v == v}
        if fields:
            out[iso_day(u)] = fields
    return out
