import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ingest import quantities
from ingest.quantities import beijing_date, forecast_quantities, update_station
from warning import grading
from warning.grading import apply_signal, grade
from warning.rules import RulesError, load_rules, parse_rules
from warning.shared.records import WarningLevel

RULES = load_rules()
HEAT = RULES["heat"]
NOW = datetime(2026, 7, 14, 8, 0, tzinfo=UTC)
OFFSET, DECAY = RULES.frost.air_to_ground_offset_c, RULES.flash_flood.api_decay
R, O, Y, B = WarningLevel.RED, WarningLevel.ORANGE, WarningLevel.YELLOW, WarningLevel.BLUE  # noqa: E741


def test_rules_table_holds_every_hazard_with_cma_codes() -> None:
    assert set(RULES) == {"rainstorm", "flash_flood", "heat", "frost", "cold_wave", "gale", "sandstorm", "heat_health",
                          "drought"}
    assert {h: r.cma_code for h, r in RULES.items()}["heat"] == "11B09"
    assert [lv.level for lv in RULES["rainstorm"].levels] == [R, O, Y, B]
    assert [lv.level for lv in RULES["sandstorm"].levels] == [R, O, Y]
    assert [lv.level for lv in RULES["frost"].levels] == [O, Y, B]
    assert "UNCONFIRMED" not in RULES["heat"].unconfirmed and RULES["flash_flood"].unconfirmed
    for rule in RULES.values():
        for lv in rule.levels:
            assert lv.basis_zh and lv.basis_en and lv.guidance_zh and lv.guidance_en


@pytest.mark.parametrize(("doc", "msg"), [
    ({}, "no \\[hazards"),
    ({"hazards": {"heat": {"levels": []}}}, "no levels"),
    ({"hazards": {"heat": {"levels": [{"level": "purple"}]}}}, "unknown level 'purple'"),
    ({"hazards": {"heat": {"levels": [{"level": "red", "all": [{"quantity": "tmax", "op": ">=", "value": 1}]}]}}},
     "unknown quantity 'tmax'"),
    ({"hazards": {"heat": {"levels": [{"level": "red", "all": [{"quantity": "rain_3h", "op": "=>", "value": 1}]}]}}},
     "op must be one of"),
    ({"hazards": {"heat": {"levels": [{"level": "red", "all": [{"quantity": "rain_3h", "op": ">=", "value": 1,
                                                                 "days": 2}]}]}}}, "needs a daily quantity"),
    ({"hazards": {"heat": {"levels": [{"level": "red"}]}}}, "needs 'all' or 'any'"),
])
def test_malformed_rules_are_refused_with_a_clear_message(doc: dict, msg: str) -> None:
    with pytest.raises(RulesError, match=msg):
        parse_rules(doc)


def test_bad_threshold_type_named(tmp_path: Path) -> None:
    text = Path(__file__).parents[2].joinpath("warning/data/rules.toml").read_text()
    bad = tmp_path / "rules.toml"
    bad.write_text(text.replace('{ quantity = "tmax_day", op = ">=", value = 40.0 }',
                                '{ quantity = "tmax_day", op = ">=", value = "forty" }'))
    with pytest.raises(RulesError, match=r"hazards.heat.levels\[2\].all\[0\]: 'value' has the wrong type"):
        load_rules(bad)


def test_beijing_day() -> None:
    assert beijing_date("2026-07-14T15:59:00Z") == "2026-07-14"
    assert beijing_date("2026-07-14T16:00:00Z") == "2026-07-15"


def run(obs: list[dict[str, Any]]) -> dict[str, Any]:
    st = None
    for o in obs:
        st = update_station(st, o) or st
    assert st is not None
    return st


def station_quantities(st: dict[str, Any]) -> dict[str, float]:
    return quantities.station_quantities(st, api_decay=DECAY, ground_offset_c=OFFSET)


def daily_series(st: dict[str, Any], name: str) -> dict[str, float]:
    return quantities.daily_series(st, name, ground_offset_c=OFFSET)


def grade_of(hazard: str, st: dict[str, Any], scale: float = 1.0) -> WarningLevel | None:
    q = station_quantities(st)
    g = grade(RULES[hazard], q, lambda n: daily_series(st, n), scale)
    return None if g is None else g[0]


@pytest.mark.parametrize(("tmaxes", "level"), [
    ([40.0], R), ([39.9], O), ([37.0], O), ([35.0, 36.0, 35.5], Y), ([34.9, 36.0, 35.5], None),
    ([41.0, 30.0], None),  # the latest day decides
])
def test_heat_levels(tmaxes: list[float], level: WarningLevel | None) -> None:
    st = run([{"time": f"2026-07-{12 + i}T06:00:00Z", "tmax_c": v} for i, v in enumerate(tmaxes)])
    assert grade_of("heat", st) == level


def test_heat_gap_breaks_the_three_day_run() -> None:
    st = run([{"time": f"2026-07-{d}T06:00:00Z", "tmax_c": 36.0} for d in (11, 13, 14)])
    assert grade_of("heat", st) is None


def test_rainstorm_rolling_windows_from_hourly_reports() -> None:
    hourly = [{"time": f"2026-07-14T{h:02d}:00:00Z", "precip_mm": 5.0, "precip_period_h": 1} for h in range(12)]
    st = run(hourly)
    q = station_quantities(st)
    assert (q["rain_1h"], q["rain_3h"], q["rain_6h"], q["rain_12h"]) == (5.0, 15.0, 30.0, 60.0)
    assert grade_of("rainstorm", st) == B  # 12 h >= 50
    st = run([*hourly[:7], {"time": "2026-07-14T09:00:00Z", "precip_mm": 100.0, "precip_period_h": 3}])
    assert station_quantities(st)["rain_3h"] == 100.0 and grade_of("rainstorm", st) == R


def test_six_hour_report_is_spread_over_its_window() -> None:
    st = run([{"time": "2026-07-14T06:00:00Z", "precip_mm": 60.0, "precip_period_h": 6}])
    q = station_quantities(st)
    assert (q["rain_1h"], q["rain_3h"], q["rain_6h"]) == (10.0, 30.0, 60.0)
    assert grade_of("rainstorm", st) == Y


def test_flash_flood_thresholds_scale_on_wet_ground() -> None:
    st = run([{"time": "2026-07-14T06:00:00Z", "precip_mm": 25.0, "precip_period_h": 1}])
    assert grade_of("flash_flood", st) == B
    assert grade_of("flash_flood", st, scale=0.8) == Y  # 25 >= 30 * 0.8
    wet = run([{"time": "2026-07-12T06:00:00Z", "precip_mm": 40.0, "precip_period_h": 24},
               {"time": "2026-07-14T06:00:00Z", "precip_mm": 1.0, "precip_period_h": 1}])
    assert station_quantities(wet)["api_mm"] == pytest.approx(1.0 + DECAY**2 * 40.0)


def test_frost_uses_ground_minimum_else_air_minus_offset() -> None:
    st = run([{"time": "2026-10-14T22:00:00Z", "ground_tmin_c": -5.5, "tmin_c": -1.0}])
    assert grade_of("frost", st) == O
    st = run([{"time": "2026-10-14T22:00:00Z", "tmin_c": -1.5}])
    assert station_quantities(st)["ground_tmin_day"] == -3.5 and grade_of("frost", st) == Y


def test_cold_wave_needs_drop_minimum_and_wind() -> None:
    base = {"time": "2026-11-12T22:00:00Z", "tmin_c": 10.0}
    st = run([base, {"time": "2026-11-13T22:00:00Z", "tmin_c": -3.0, "wind_ms": 11.0}])
    assert station_quantities(st)["tmin_drop_24h"] == 13.0 and grade_of("cold_wave", st) == O
    st = run([base, {"time": "2026-11-13T22:00:00Z", "tmin_c": -3.0, "wind_ms": 9.0}])
    assert grade_of("cold_wave", st) == B  # 48 h drop >= 8, wind force 5 only
    st = run([base, {"time": "2026-11-13T22:00:00Z", "tmin_c": 5.0, "wind_ms": 15.0}])
    assert grade_of("cold_wave", st) is None  # minimum not low enough


@pytest.mark.parametrize(("wind", "gust", "level"), [(10.8, None, B), (None, 21.0, Y), (25.0, None, O),
                                                     (None, 37.0, R), (10.7, 13.8, None)])
def test_gale_beaufort_bands(wind: float | None, gust: float | None, level: WarningLevel | None) -> None:
    obs = {"time": "2026-04-02T06:00:00Z", **({"wind_ms": wind} if wind else {}), **({"gust_ms": gust} if gust else {})}
    assert grade_of("gale", run([obs])) == level


def test_sandstorm_needs_dust_not_fog() -> None:
    dust = {"time": "2026-04-02T06:00:00Z", "visibility_m": 400.0, "wind_ms": 12.0, "rh_pct": 15.0}
    assert grade_of("sandstorm", run([dust])) == O
    fog = {**dust, "wind_ms": 1.0, "rh_pct": 98.0}
    assert grade_of("sandstorm", run([fog])) is None


def test_missing_inputs_give_no_judgement() -> None:
    st = run([{"time": "2026-07-14T06:00:00Z", "tmax_c": 30.0}])
    assert grade(RULES["rainstorm"], station_quantities(st)) is None


def test_forecast_quantities_are_lower_bounds_for_longer_windows() -> None:
    q = forecast_quantities({"precip_mm": 60.0, "tmax_c": 40.5}, 6)
    assert "rain_3h" not in q and q["rain_6h"] == q["rain_24h"] == 60.0 and q["tmax_day"] == 40.5
    assert grade(RULES["heat"], q)[0] == R  # type: ignore[index]


def sig(level: str | None, station: str = "52418", time: str = "2026-07-14T06:00:00Z", value: float = 40.5,
        **kw: Any) -> dict[str, Any]:
    return {"region_code": "620982", "region_name": "Dunhuang City", "region_name_zh": "敦煌市",
            "prefecture_code": "620900", "station_id": station, "station_name": "敦煌", "hazard": "heat",
            "level": level, "quantity": "tmax_day", "value": value, "time": time, "basis": "observed", **kw}


def tick(time: str) -> dict[str, Any]:
    return {"kind": "tick", "region_code": "620982", "hazard": "heat", "time": time}


def test_lifecycle_alert_extend_upgrade_downgrade_expire() -> None:
    st, ev = apply_signal(None, sig("orange", value=38), HEAT, NOW)
    assert ev is not None and (ev["msg_type"], ev["change"], ev["level"]) == ("alert", "issue", "orange")
    assert ev["severity"] == "Severe" and ev["cma_code"] == "11B0903" and ev["certainty"] == "Observed"
    assert ev["expires"] == "2026-07-15T06:00:00Z" and "敦煌市" in ev["headline_zh"] and "橙色" in ev["headline_zh"]
    first = ev
    st, ev = apply_signal(st, sig("orange", time="2026-07-14T07:00:00Z", value=38.5), HEAT, NOW)
    assert ev is None  # same level, expiry moved 1 h (< extend_step_h): nothing to send
    st, ev = apply_signal(st, sig("red", "52424", time="2026-07-14T08:00:00Z"), HEAT, NOW)
    assert ev is not None and (ev["msg_type"], ev["change"], ev["level"]) == ("update", "upgrade", "red")
    assert ev["warning_id"] == first["warning_id"] and ev["references"] == [first["id"]]
    assert [s["station_id"] for s in ev["stations"]] == ["52424", "52418"]  # most severe first
    second = ev
    st, ev = apply_signal(st, sig("red", "52424", time="2026-07-14T21:00:00Z"), HEAT, NOW)
    assert ev is not None and ev["change"] == "extend" and ev["expires"] == "2026-07-15T21:00:00Z"
    assert ev["references"] == [first["id"], second["id"]]
    # 52424's red lapses at 07-15T21:00; 52418's orange lapsed at 07-15T07:00 -> nothing left, hold, then expire
    st, ev = apply_signal(st, tick("2026-07-15T21:30:00Z"), HEAT, NOW)
    assert ev is None and st["pending"] == {"level": None, "since": "2026-07-15T21:30:00Z"}
    st, ev = apply_signal(st, tick("2026-07-15T22:30:00Z"), HEAT, NOW)
    assert ev is not None and (ev["msg_type"], ev["change"]) == ("cancel", "expire") and st["warning"] is None


def test_downgrade_needs_the_hold_time_and_does_not_flap() -> None:
    st, ev = apply_signal(None, sig("orange", value=38), HEAT, NOW)
    st, ev = apply_signal(st, sig("red", "52424", time="2026-07-14T07:00:00Z"), HEAT, NOW)
    assert ev is not None and ev["level"] == "red"
    # 52424's red lapses at 07-15T07:00 while 52418 keeps orange alive with fresh reports
    st, ev = apply_signal(st, sig("orange", time="2026-07-15T06:30:00Z", value=38), HEAT, NOW)
    st, ev = apply_signal(st, tick("2026-07-15T07:10:00Z"), HEAT, NOW)
    assert ev is None and st["pending"]["level"] == "orange"
    st, ev = apply_signal(st, sig("red", "52424", time="2026-07-15T07:40:00Z"), HEAT, NOW)
    # back to red within the hold: no downgrade/upgrade flap, only the expiry moves on
    assert ev is not None and ev["change"] == "extend" and ev["level"] == "red" and st["pending"] is None
    st, ev = apply_signal(st, tick("2026-07-16T07:50:00Z"), HEAT, NOW)
    st, ev = apply_signal(st, tick("2026-07-16T08:50:00Z"), HEAT, NOW)
    assert ev is not None and ev["msg_type"] == "cancel"


def test_operator_cancel_and_forecast_basis() -> None:
    f = sig("red", time="2026-07-14T00:00:00Z", basis="forecast", onset="2026-07-14T04:00:00Z",
            valid_to="2026-07-15T00:00:00Z")
    st, ev = apply_signal(None, f, HEAT, datetime(2026, 7, 14, 0, 5, tzinfo=UTC))
    assert ev is not None and (ev["basis"], ev["urgency"], ev["certainty"]) == ("forecast", "Expected", "Likely")
    assert ev["onset"] == "2026-07-14T04:00:00Z" and ev["expires"] == "2026-07-15T00:00:00Z"
    st, ev2 = apply_signal(st, {"kind": "operator_cancel", "region_code": "620982", "hazard": "heat",
                                "time": "2026-07-14T01:00:00Z"}, HEAT, NOW)
    assert ev2 is not None and (ev2["msg_type"], ev2["change"]) == ("cancel", "operator_cancel")
    assert ev2["references"] == [ev["id"]] and st["stations"] == {}


def test_event_ids_are_deterministic_for_replays() -> None:
    _, a = apply_signal(None, sig("red"), HEAT, NOW)
    _, b = apply_signal(None, sig("red"), HEAT, datetime(2026, 7, 15, tzinfo=UTC))
    assert a is not None and b is not None and a["id"] == b["id"]


def test_station_state_is_idempotent() -> None:
    s = update_station(None, {"time": "2026-07-14T04:00:00Z", "tmax_c": 38.0})
    s = update_station(s, {"time": "2026-07-14T06:00:00Z", "tmax_c": 36.0})
    assert s is not None and s["d"]["2026-07-14"]["tmax"] == 38.0
    assert update_station(s, {"time": "2026-07-14T06:00:00Z", "tmax_c": 45.0}) is None  # replayed
    assert update_station(s, {"time": "2026-07-14T05:00:00Z", "tmax_c": 45.0}) is None  # older


class FakeClimatology:
    def t95(self, sid: str) -> float | None:
        return 24.0 if sid == "52889" else None

    def ehf85(self, sid: str) -> float | None:
        return 10.0 if sid == "52889" else None


def test_heat_health_from_the_excess_heat_factor_with_station_climatology() -> None:
    """30 days at a daily mean of 20 degC, then 3 hot days: EHF by hand, then its severity class."""
    from warning.pipeline import StationGrader
    from warning.shared.regions import RegionTree, StationRegistry

    grader = StationGrader(RULES, StationRegistry.load(), RegionTree.load(), FakeClimatology())
    from datetime import timedelta as td
    day0 = datetime(2026, 6, 1, 7, 0, tzinfo=UTC)

    def run_station(sid: str, hot_mean: float) -> list[dict[str, Any]]:
        states: dict[str, Any] = {}
        sigs: list[dict[str, Any]] = []
        def mean(k: int) -> float:
            return hot_mean if 30 <= k < 33 else 20.0
        # a day's mean pairs its maximum with the following night's minimum (the next day's, Nairn & Fawcett):
        # day k reports Tmax = mean(k) + 5 and the night before it Tmin = mean(k - 1) - 5; the 35th report starts
        # day 34, completing day 33, whose minimum gives day 32 its mean
        for k in range(35):
            obs = {"station_id": sid, "time": (day0 + td(days=k)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                   "tmax_c": mean(k) + 5.0, "tmin_c": mean(k - 1) - 5.0}
            sigs = grader.observe_batch(states, [obs])[2]
        return [s for s in sigs if s["hazard"] == "heat_health" and s["region_level"] == "county"]

    # EHI_sig = 27 - 24 = 3; EHI_accl = 27 - 20 = 7; EHF = 3 * 7 = 21 K2 -> severity 2.1 (severe -> orange)
    [sig] = run_station("52889", 27.0)
    assert sig["level"] == "orange" and sig["quantity"] == "ehf_severity" and abs(sig["value"] - 2.1) < 1e-9
    [sig] = run_station("52889", 30.0)  # 6 * 10 = 60 K2 -> 6.0 -> extreme (red)
    assert sig["level"] == "red"
    assert run_station("52889", 23.0) == []  # below t95: EHF < 0
    assert run_station("52418", 30.0) == []  # no climatology for this station: not judged


def test_drought_from_daily_mci_with_the_process_rule() -> None:
    """30 years of synthetic daily rain fit the MCI parameters; then a spring with no rain at all: the daily MCI
    falls, and the drought warning comes only once 15 days of at least light drought have passed."""
    import numpy as np

    from indices.drought import mci_fit
    from warning.pipeline import StationGrader
    from warning.shared.regions import RegionTree, StationRegistry

    rng = np.random.default_rng(3)
    hist_days = np.arange(np.datetime64("1981-01-01"), np.datetime64("2011-01-01"))
    rain = np.where(rng.random(hist_days.size) < 0.3, rng.gamma(0.8, 6.0, hist_days.size), 0.0)
    params = mci_fit(rain, hist_days)

    class Clim:
        def t95(self, sid: str) -> None:
            return None

        def ehf85(self, sid: str) -> None:
            return None

        def mci_params(self, sid: str) -> Any:
            return params if sid == "52889" else None

    grader = StationGrader(RULES, StationRegistry.load(), RegionTree.load(), Clim())
    states: dict[str, Any] = {}
    levels: dict[str, str] = {}
    runs: dict[str, float] = {}
    day = np.datetime64("2026-01-01")
    while day <= np.datetime64("2026-07-31"):
        # one report a day at 14:00 Beijing: a normal wet winter, then no rain from March on
        wet = day < np.datetime64("2026-03-01")
        obs = {"station_id": "52889", "time": f"{day}T06:00:00Z", "tmax_c": 25.0, "tmin_c": 10.0,
               "precip_mm": 2.0 if wet else 0.0, "precip_period_h": 24}
        for sig in grader.observe_batch(states, [obs])[2]:
            if sig["hazard"] == "drought" and sig["region_level"] == "county":
                levels[str(day)] = sig["level"]
        st = states["52889"]
        if st.get("mci"):
            runs[str(day)] = max(st["mci"].values())
        day += np.timedelta64(1, "D")
    assert "mci" in states["52889"] and min(states["52889"]["mci"].values()) <= -1.5
    first = min(levels)
    assert levels[first] in ("orange", "red") and levels[max(levels)] == "red"
    mci = states["52889"]["mci"]
    assert all(v <= -0.5 for v in mci.values())  # the run behind the warning
    assert first >= "2026-06-01"  # 150 days of records (from Jan 1) are needed before the first MCI


@pytest.mark.parametrize("seed", range(6))
def test_summary_fast_path_equals_the_full_pass(seed: int) -> None:
    """apply_signal skips the pass over a region's stations, and catch_up the expiry ticks, while nothing can have
    expired (the state's "summary"); with the summary removed before every signal (always the full pass) the events
    and states are the same, for station signals in and out of time order, stale forecasts, ticks and operator
    cancels."""
    rules = load_rules()
    rng = random.Random(seed)
    now = datetime(2026, 7, 1, tzinfo=UTC)
    fast_hits = catch_up_skips = 0
    for _ in range(60):
        hazard = rng.choice(list(rules))
        rule = rules[hazard]
        fast: dict[str, Any] | None = None
        full: dict[str, Any] | None = None
        h = 0
        for k in range(rng.randint(1, 40)):
            h = max(0, h + rng.choice([0, 0, 1, 1, 2, 5, 13, -1, -3]))
            t = f"2026-07-{1 + h // 24:02d}T{h % 24:02d}:00:00Z"
            kind = rng.choice(["station"] * 8 + ["tick", "operator_cancel"])
            sig: dict[str, Any] = {"kind": kind, "region_code": "620102", "hazard": hazard, "time": t,
                                   "accepted_at": 1.0 + k}
            if kind == "station":
                sig.update(station_id=rng.choice("ABCDE"), station_name="x", region_name="R", quantity="q",
                           value=1.0, level=rng.choice([""] + [lr.level.colour for lr in rule.levels]),
                           basis=rng.choice(["observed", "observed", "forecast"]))
                if sig["basis"] == "forecast":
                    end = h + rng.choice([-2, 6, 30])
                    sig["valid_to"] = f"2026-07-{1 + max(0, end) // 24:02d}T{max(0, end) % 24:02d}:00:00Z"
            fast_hits += bool(fast and grading._live_since(fast["summary"], fast["stations"], None, t))
            caught_fast = fast and fast.get("warning") and t > fast["t"] and fast["pending"] is None
            fast, c_fast = grading.catch_up(fast, t, rule, now)
            catch_up_skips += bool(caught_fast and t < fast["summary"][1])  # type: ignore[index]
            fast, ev_fast = grading.apply_signal(fast, dict(sig), rule, now)
            stripped = {k2: v for k2, v in full.items() if k2 != "summary"} if full else None
            stripped, c_full = grading.catch_up(stripped, t, rule, now)
            full, ev_full = grading.apply_signal(stripped, dict(sig), rule, now)
            assert c_fast == c_full
            assert ev_fast == ev_full
            assert {k2: v for k2, v in fast.items() if k2 != "summary"} == \
                {k2: v for k2, v in full.items() if k2 != "summary"}
    assert fast_hits > 50 and catch_up_skips > 10  # the fast paths are exercised, not only the full pass


def test_a_late_report_does_not_turn_the_region_clock_back() -> None:
    """A report from behind (its obs partition lagging, a backlog) counts as of its own time, but the region is
    judged at the latest time it reached: an entry that has already expired there does not re-issue."""
    st, ev = apply_signal(None, sig("red", "52424", time="2026-07-14T07:00:00Z"), HEAT, NOW)
    assert ev is not None and ev["msg_type"] == "alert"
    st, _ = apply_signal(st, tick("2026-07-15T07:30:00Z"), HEAT, NOW)
    st, ev = apply_signal(st, tick("2026-07-15T08:30:00Z"), HEAT, NOW)
    assert ev is not None and (ev["msg_type"], ev["change"]) == ("cancel", "expire")
    # 52418's red at 07-14T08:00 held until 07-15T08:00: already over at the region's 08:30
    st, ev = apply_signal(st, sig("red", time="2026-07-14T08:00:00Z"), HEAT, NOW)
    assert ev is None and st["warning"] is None and st["t"] == "2026-07-15T08:30:00Z"
    # a late report whose level still holds at the region's time does issue (until its own expiry)
    st, ev = apply_signal(st, sig("orange", time="2026-07-14T09:00:00Z", value=38), HEAT, NOW)
    assert ev is not None and (ev["msg_type"], ev["level"], ev["expires"]) == ("alert", "orange",
                                                                               "2026-07-15T09:00:00Z")
