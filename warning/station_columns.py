"""Per-partition station state as numpy columns: the worker's hot path (issue 8).

The same state and quantities as :mod:`warning.quantities` (the readable per-report reference, which the
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
JSON dicts with date keys; ``warning.partition_state`` decides when they are written.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any

import numpy as np
import orjson

from warning.quantities import (
    API_DAYS,
    DROUGHT_LIGHT,
    EHF_DAYS,
    KEEP_DAYS,
    KEEP_HOURS,
    MCI_KEEP_DAYS,
    MCI_PET_DAYS,
    MCI_PRECIP_DAYS,
    RAIN_WINDOWS_H,
)

NONE = -(1 << 40)  # "no day/hour yet" for ring ends
EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
BEIJING_S = 8 * 3600
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


@dataclass(frozen=True)
class SlotInfo:
    """What a station's quantities need from outside the reports: latitude (PET) and climatology thresholds."""

    latitude: float = 36.0
    t95: float | None = None
    ehf85: float | None = None


@lru_cache(maxsize=8192)
def iso_day(ordinal: int) -> str:
    return date.fromordinal(ordinal).isoformat()


@lru_cache(maxsize=8192)
def month_of(ordinal: int) -> int:
    return date.fromordinal(ordinal).month


def _ring_advance(ring: np.ndarray, end: np.ndarray, slots: np.ndarray, new_end: np.ndarray, fill: float) -> None:
    """Move the rings of ``slots`` forward to ``new_end`` (>= their end): positions of the skipped and new
    days/hours are cleared, so a ring always holds exactly (end - size, end]."""
    size = ring.shape[1]
    old = end[slots]
    pos = np.arange(size)
    unit_of_pos = new_end[:, None] - ((new_end[:, None] - pos) % size)  # the day/hour each position now stands for
    clear = unit_of_pos > old[:, None]
    if clear.any():
        sub = ring[slots]
        sub[clear] = fill
        ring[slots] = sub
    end[slots] = new_end


def _ring_write(ring: np.ndarray, end: np.ndarray, slots: np.ndarray, unit: np.ndarray, values: np.ndarray) -> None:
    """Write ``values`` at day ``unit`` (> end) into the rings of ``slots``."""
    if slots.size == 0:
        return
    _ring_advance(ring, end, slots, unit, math.nan)
    ring[slots, unit % ring.shape[1]] = values


def _ring_read(ring: np.ndarray, end: np.ndarray, slots: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """Value at day/hour ``unit`` (NaN unless it is within the ring's window)."""
    size = ring.shape[1]
    e = end[slots]
    ok = (unit <= e) & (unit > e - size)
    return np.where(ok, ring[slots, unit % size], np.nan)


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

    def __len__(self) -> int:
        return len(self.station_ids)

    def copy(self) -> StationColumns:
        """An independent copy (the per-report fallback keeps one to undo a report that failed half-way)."""
        out = StationColumns(self.info, self.mci_params)
        out.station_ids, out.slot_of = list(self.station_ids), dict(self.slot_of)
        out.arrays = {k: v.copy() for k, v in self.arrays.items()}
        out.latitude, out.t95, out.ehf85 = self.latitude.copy(), self.t95.copy(), self.ehf85.copy()
        return out

    # ---- slots ------------------------------------------------------------------------------------------
    def slots(self, station_ids: Iterable[str]) -> np.ndarray:
        """Slot of each station, adding new ones."""
        ids = station_ids if isinstance(station_ids, list) else list(station_ids)
        get = self.slot_of.get
        out = [get(s) for s in ids]
        if None in out:
            out = [self.slot_of[s] if s in self.slot_of else self._add(s) for s in ids]
        return np.array(out, dtype=np.int64)

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
        return slot

    # ---- one batch --------------------------------------------------------------------------------------
    def apply(self, station_ids: list[str], t: np.ndarray, values: dict[str, np.ndarray], *,
              api_decay: float = 0.85, ground_offset_c: float = 2.0) -> Applied:
        """Fold a batch (arrival order) into the state. Returns which reports were applied (not stale), every
        quantity per report as of that report, and what a consecutive-day condition needs."""
        n = len(station_ids)
        slots = self.slots(station_ids)
        hour = np.floor_divide(t, 3600).astype(np.int64)
        day = (np.floor_divide(t + BEIJING_S, 86400).astype(np.int64) + EPOCH_ORDINAL)
        q = {name: np.full(n, np.nan) for name in QUANTITY_NAMES}
        applied = np.zeros(n, dtype=bool)
        day_rings = np.full((n, KEEP_DAYS, len(DAY_FIELDS)), np.nan)
        for rows in _rounds(slots):
            s = slots[rows]
            fresh = t[rows] > self.arrays["t"][s]
            rows, s = rows[fresh], s[fresh]
            if rows.size == 0:
                continue
            applied[rows] = True
            self._update(rows, s, t, hour, day, values)
            self._quantities(rows, s, hour[rows], day[rows], q, api_decay, ground_offset_c)
            day_rings[rows] = self.arrays["day"][s]
        return Applied(slots, applied, q, day, day_rings, ground_offset_c)

    def _update(self, rows: np.ndarray, s: np.ndarray, t: np.ndarray, hour: np.ndarray, day: np.ndarray,
                values: dict[str, np.ndarray]) -> None:
        a = self.arrays
        d = day[rows]
        day_end = a["day_end"]
        new_day = d > day_end[s]
        completing = new_day & (day_end[s] != NONE)
        if completing.any():
            self._complete_days(s[completing], day_end[s[completing]])
        if new_day.any():
            _ring_advance(a["day"], day_end, s[new_day], d[new_day], math.nan)
        pos = d % KEEP_DAYS
        cur = a["day"][s, pos]  # [rows, fields]
        v = {e: values[e][rows] for e in values}
        with np.errstate(invalid="ignore"):
            cur[:, TMAX] = np.fmax(np.fmax(cur[:, TMAX], v["tmax_c"]), v["air_temp_c"])
            cur[:, TMIN] = np.fmin(np.fmin(cur[:, TMIN], v["tmin_c"]), v["air_temp_c"])
            cur[:, GTMIN] = np.fmin(cur[:, GTMIN], v["ground_tmin_c"])
            cur[:, WMAX] = np.fmax(cur[:, WMAX], v["wind_ms"])
            cur[:, GMAX] = np.fmax(cur[:, GMAX], v["gust_ms"])
        rain = v["precip_mm"]
        wet = ~np.isnan(rain)
        cur[:, RAIN] = np.where(wet, np.nan_to_num(cur[:, RAIN]) + np.nan_to_num(rain), cur[:, RAIN])
        a["day"][s, pos] = cur
        if wet.any():  # rain spread evenly over the p hours ending at the report (quantities.update_station)
            ws, wh, amount = s[wet], hour[rows][wet], rain[wet]
            ph = v["precip_period_h"][wet]
            period = np.maximum(1.0, np.round(np.where(np.isnan(ph) | (ph == 0), 1.0, ph)))
            _ring_advance(a["rain_h"], a["hour_end"], ws, np.maximum(wh, a["hour_end"][ws]), 0.0)
            share = amount / period
            for i in range(int(min(period.max(), KEEP_HOURS))):
                m = period > i
                a["rain_h"][ws[m], (wh[m] - i) % KEEP_HOURS] += share[m]
            a["has_hours"][ws] = 1
        for k, el in enumerate(NOW_FIELDS):
            x = v[el]
            ok = ~np.isnan(x)
            if ok.any():
                a["now"][s[ok], k] = x[ok]
        a["t"][s] = t[rows]

    def _complete_days(self, s: np.ndarray, done: np.ndarray) -> None:
        """quantities.complete_day for many stations: fold each station's last day into the daily rings."""
        a = self.arrays
        day = a["day"][s, done % KEEP_DAYS]
        tx, tn, rain = day[:, TMAX], day[:, TMIN], day[:, RAIN]
        both = ~np.isnan(tx) & ~np.isnan(tn)
        _ring_write(a["m"], a["m_end"], s[both], done[both], (tx[both] + tn[both]) / 2)
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
        p = _ring_window(a["pd"], a["pd_end"], rs, rd, MCI_PRECIP_DAYS)
        e = _ring_window(a["pe"], a["pe_end"], rs, rd, MCI_PET_DAYS)
        full = ~np.isnan(p).any(axis=1)
        for i in np.flatnonzero(full).tolist():
            slot, ordinal = int(rs[i]), int(rd[i])
            assert self.mci_params is not None
            params = self.mci_params(self.station_ids[slot])
            if params is None:
                continue
            v = float(np.asarray(mci_from_params(p[i], e[i], month_of(ordinal), daily_slot(iso_day(ordinal)),
                                                 params)))
            if math.isfinite(v):
                _ring_write(a["mci"], a["mci_end"], np.array([slot]), np.array([ordinal]), np.array([v]))

    def _quantities(self, rows: np.ndarray, s: np.ndarray, hour: np.ndarray, today: np.ndarray,
                    q: dict[str, np.ndarray], api_decay: float, ground_offset_c: float) -> None:
        """quantities.station_quantities for the reports of one round (each its station's latest)."""
        a = self.arrays
        ring = a["day"]
        cur = ring[s, today % KEEP_DAYS]
        q["tmax_day"][rows] = cur[:, TMAX]
        q["tmin_day"][rows] = cur[:, TMIN]
        q["wind_max_day"][rows] = cur[:, WMAX]
        q["gust_max_day"][rows] = cur[:, GMAX]
        q["ground_tmin_day"][rows] = np.where(np.isnan(cur[:, GTMIN]), cur[:, TMIN] - ground_offset_c, cur[:, GTMIN])
        y1 = _ring_read(ring[:, :, TMIN], a["day_end"], s, today - 1)
        y2 = _ring_read(ring[:, :, TMIN], a["day_end"], s, today - 2)
        q["tmin_drop_24h"][rows] = y1 - cur[:, TMIN]
        prev = np.fmax(y1, y2)
        q["tmin_drop_48h"][rows] = prev - cur[:, TMIN]
        has = a["has_hours"][s].astype(bool)
        if has.any():
            hs = s[has]
            window = _ring_window(a["rain_h"], a["hour_end"], hs, hour[has], KEEP_HOURS, 0.0)[:, ::-1]  # newest first
            sums = np.cumsum(window, axis=1)
            for n in RAIN_WINDOWS_H:
                q[f"rain_{n}h"][rows[has]] = sums[:, n - 1]
        pd_any = a["pd_end"][s] != NONE
        today_rain = cur[:, RAIN]
        api_on = ~np.isnan(today_rain) | pd_any
        if api_on.any():
            api = np.nan_to_num(today_rain)
            past = _ring_window(a["pd"], a["pd_end"], s, today - 1, API_DAYS - 1)[:, ::-1]  # column i-1: day today-i
            for i in range(1, API_DAYS):
                r = past[:, i - 1]
                if i < KEEP_DAYS:
                    r = np.where(np.isnan(r), _ring_read(ring[:, :, RAIN], a["day_end"], s, today - i), r)
                add = ~np.isnan(r) & (r != 0)
                if add.any():  # in the same order as the reference's sum, so the floats agree exactly
                    api = np.where(add, api + api_decay ** i * np.nan_to_num(r), api)
            q["api_mm"][rows] = np.where(api_on, api, np.nan)
        for k, name in enumerate(("visibility", "wind_now", "rh_now")):
            q[name][rows] = a["now"][s, k]
        mci_end = a["mci_end"][s]
        has_mci = mci_end != NONE
        if has_mci.any():
            ms, me = s[has_mci], mci_end[has_mci]
            hist = _ring_window(a["mci"], a["mci_end"], ms, me, MCI_KEEP_DAYS)[:, ::-1]  # latest first
            q["mci_day"][rows[has_mci]] = hist[:, 0]
            dry = hist <= DROUGHT_LIGHT  # NaN (missing day) ends the run
            q["drought_run_days"][rows[has_mci]] = np.where(dry.all(axis=1), MCI_KEEP_DAYS, np.argmin(dry, axis=1))
        ehf_on = ~np.isnan(self.t95[s]) & ~np.isnan(self.ehf85[s]) & (a["m_end"][s] != NONE)
        if ehf_on.any():
            from indices.heat import excess_heat_factor

            es = s[ehf_on]
            means = _ring_window(a["m"], a["m_end"], es, a["m_end"][es], EHF_DAYS)
            full = ~np.isnan(means).any(axis=1)
            if full.any():
                ehf = np.asarray(excess_heat_factor(means[full], self.t95[es[full]], align="end"))[:, -1]
                target = rows[ehf_on][full]
                q["ehf_severity"][target] = np.where(np.isfinite(ehf), ehf / self.ehf85[es[full]], np.nan)

    # ---- views ------------------------------------------------------------------------------------------
    def daily_precip(self, station_id: str) -> dict[str, float]:
        """The station's daily precipitation totals kept for MCI (ISO date -> mm), for the SPI product."""
        slot = self.slot_of.get(station_id)
        if slot is None or self.arrays["pd_end"][slot] == NONE:
            return {}
        end = int(self.arrays["pd_end"][slot])
        out = {}
        for u in range(end - MCI_PRECIP_DAYS + 1, end + 1):
            v = self.arrays["pd"][slot, u % MCI_PRECIP_DAYS]
            if v == v:
                out[iso_day(u)] = float(v)
        return out

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


def _rounds(slots: np.ndarray) -> list[np.ndarray]:
    """Row indices split so that no station appears twice in a round; its k-th report is in round k."""
    n = slots.size
    if n == 0:
        return []
    order = np.argsort(slots, kind="stable")
    ss = slots[order]
    start = np.ones(n, dtype=bool)
    start[1:] = ss[1:] != ss[:-1]
    idx = np.arange(n)
    occ_sorted = idx - np.maximum.accumulate(np.where(start, idx, 0))
    if not occ_sorted.any():
        return [idx]
    occ = np.empty(n, dtype=np.int64)
    occ[order] = occ_sorted
    return [np.flatnonzero(occ == k) for k in range(int(occ_sorted.max()) + 1)]


@dataclass
class Applied:
    """What ``StationColumns.apply`` did to a batch."""

    slots: np.ndarray
    applied: np.ndarray  # bool per report: False = not newer than the station's last report (stale)
    quantities: dict[str, np.ndarray]  # per report, as of that report (NaN = not available)
    day: np.ndarray  # Beijing day ordinal per report
    day_rings: np.ndarray  # [reports, KEEP_DAYS, fields]: the 3-day ring as of each report
    ground_offset_c: float

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
            if v != v and quantity == "ground_tmin_day":
                v = row[TMIN] - self.ground_offset_c
            if v == v:
                out[iso_day(u)] = float(v)
        return out
