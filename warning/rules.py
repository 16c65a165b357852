"""Warning criteria loaded from ``warning/data/rules.toml`` (or a bureau's own file) and validated at start.

A malformed table stops the service with a message naming the hazard, level and key, so a typo in a threshold
never silently disables a warning. The table format is documented at the top of rules.toml.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from ingest.quantities import QUANTITIES
from warning.shared.records import WarningLevel

PACKAGED = "data/rules.toml"  # the packaged table, in the warning package
OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": lambda v, t: v >= t, ">": lambda v, t: v > t, "<=": lambda v, t: v <= t, "<": lambda v, t: v < t}
CAP_SEVERITY = {WarningLevel.BLUE: "Minor", WarningLevel.YELLOW: "Moderate", WarningLevel.ORANGE: "Severe",
                WarningLevel.RED: "Extreme"}
LEVEL_ZH = {WarningLevel.BLUE: "蓝色", WarningLevel.YELLOW: "黄色", WarningLevel.ORANGE: "橙色",
            WarningLevel.RED: "红色"}
CMA_LEVEL_CODE = {WarningLevel.BLUE: "01", WarningLevel.YELLOW: "02", WarningLevel.ORANGE: "03",
                  WarningLevel.RED: "04"}


class RulesError(ValueError):
    pass


@dataclass(frozen=True)
class Condition:
    quantity: str
    op: str
    value: float
    days: int = 1

    def holds(self, v: float) -> bool:
        return OPS[self.op](v, self.value)


@dataclass(frozen=True)
class LevelRule:
    level: WarningLevel
    all: tuple[Condition, ...]
    any: tuple[Condition, ...]
    basis_zh: str
    basis_en: str
    guidance_zh: str
    guidance_en: str
    forecast_lead_h: float = 24.0  # a forecast may issue this level at most this far ahead (Order-16 "N小时内")
    issue: str = "auto"  # "review": its events are drafts a forecaster approves or rejects (warning.review)

    @property
    def conditions(self) -> tuple[Condition, ...]:
        return self.all + self.any


GRID_ROLLUP_METHODS = ("area_share", "area_km2")


@dataclass(frozen=True)
class GridRollup:
    """How a county's forecast level is decided from its grid cells (``warning.grid_grading``): the county is at a
    level when ``area_share``: at least ``min`` of its area covered by the grid (cells weighted by their area
    inside the county) is at or above the level; ``area_km2``: at least ``min`` km² of it is."""

    method: str = "area_share"
    min: float = 0.1


@dataclass(frozen=True)
class HazardRule:
    hazard: str
    name_zh: str
    name_en: str
    cma_code: str
    cap_category: str
    valid_hours: float
    extend_step_h: float
    downgrade_hold_h: float
    cancel_hold_h: float
    source: str
    levels: tuple[LevelRule, ...]  # most severe first
    unconfirmed: str = ""
    forecast_lead_h: float = 24.0
    stale_after_h: float = 36.0  # an actual report older than this (vs the wall clock) issues no live warning
    forecast_stale_after_h: float = 36.0  # the same for a forecast, by its issue time (never below stale_after_h)
    grid_rollup: GridRollup = field(default_factory=GridRollup)  # grid cells -> county level (rules.toml)

    def within_lead(self, lead_h: float) -> HazardRule:
        """This rule with only the levels a forecast ``lead_h`` hours ahead may issue (each level's own
        ``forecast_lead_h``): a forecast beyond a level's horizon can issue only the levels whose horizon covers it."""
        return _within_lead(self, round(float(lead_h), 6))

    def level_rule(self, level: WarningLevel) -> LevelRule:
        for r in self.levels:
            if r.level == level:
                return r
        raise KeyError(level)

    @property
    def quantities(self) -> set[str]:
        return {c.quantity for r in self.levels for c in r.conditions}


@lru_cache(maxsize=256)
def _within_lead(rule: HazardRule, lead_h: float) -> HazardRule:
    keep = tuple(lr for lr in rule.levels if lead_h <= lr.forecast_lead_h + 1e-9)
    return rule if len(keep) == len(rule.levels) else replace(rule, levels=keep)


# The hazard-specific settings: values in rules.toml ([flash_flood], [frost], [sandstorm]); a bureau's table that
# leaves a setting out takes the packaged table's (so each value has one place).
@dataclass(frozen=True)
class FlashFloodConfig:
    api_decay: float
    wet_api_mm: float
    wet_factor: float
    counties: dict[str, float] = field(default_factory=dict)  # county code -> threshold scale


@dataclass(frozen=True)
class FrostConfig:
    air_to_ground_offset_c: float
    season_months: tuple[int, ...]
    calm_wind_ms: float = 5.4  # the offset applies on calm days only ([frost] calm_wind_ms, UNCONFIRMED)


@dataclass(frozen=True)
class DroughtConfig:
    """[drought]: the GB/T 20481-2017 drought process (days to start it, days without drought to end it)."""

    process_min_days: int = 15
    process_end_days: int = 5
    arid_annual_precip_mm: float = 200.0  # below: an arid station (climatology build; UNCONFIRMED)


@dataclass(frozen=True)
class DaysConfig:
    """[days]: the day boundary of daily extremes and totals (hour of Beijing time; 20 = CMA surface records)."""

    boundary_bjt_h: int = 20


@dataclass(frozen=True)
class ReviewConfig:
    """[review]: the forecasters' desk. A draft not handled within ``escalate_after_min`` is escalated (console,
    metrics); it is issued unreviewed only where ``issue_unhandled_after_min`` says so (0: never)."""

    escalate_after_min: float = 15.0
    issue_unhandled_after_min: float = 0.0


ISSUE_POLICIES = ("auto", "review")


@dataclass(frozen=True)
class SandstormConfig:
    """Settings of the sand-dust kernels (indices.wind), not read by the station grading."""

    floating_dust_max_wind_ms: float
    local_blue_visibility_m: float


class Rules(dict[str, HazardRule]):
    """Hazard name -> HazardRule, plus the hazard-specific settings."""

    def __init__(self, hazards: dict[str, HazardRule], flash_flood: FlashFloodConfig, frost: FrostConfig,
                 sandstorm: SandstormConfig, days: DaysConfig | None = None,
                 drought: DroughtConfig | None = None, review: ReviewConfig | None = None) -> None:
        super().__init__(hazards)
        self.review = review or ReviewConfig()
        self.flash_flood = flash_flood
        self.frost = frost
        self.sandstorm = sandstorm
        self.days = days or DaysConfig()
        self.drought = drought or DroughtConfig()
        self.acknowledgement = AcknowledgementPolicy()

    def issue_policy(self, hazard: str, level: str) -> str:
        """``auto`` or ``review`` for a hazard's level (an unknown hazard or level: auto, as before the desk)."""
        rule = self.get(hazard)
        if rule is None:
            return "auto"
        for lr in rule.levels:
            if lr.level.colour == level:
                return lr.issue
        return "auto"


def _req(d: dict[str, Any], key: str, typ: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(d, dict):
        raise RulesError(f"{where}: expected a table")
    if key not in d:
        raise RulesError(f"{where}: missing '{key}'")
    v = d[key]
    if not isinstance(v, typ) or isinstance(v, bool):
        raise RulesError(f"{where}: '{key}' has the wrong type ({type(v).__name__})")
    return v


def _conditions(raw: Any, where: str) -> tuple[Condition, ...]:
    if not isinstance(raw, list):
        raise RulesError(f"{where}: expected a list of conditions")
    out = []
    for i, c in enumerate(raw):
        cw = f"{where}[{i}]"
        q = _req(c, "quantity", str, cw)
        if q not in QUANTITIES:
            raise RulesError(f"{cw}: unknown quantity {q!r}; known: {', '.join(sorted(QUANTITIES))}")
        op = _req(c, "op", str, cw)
        if op not in OPS:
            raise RulesError(f"{cw}: op must be one of {sorted(OPS)}")
        days = c.get("days", 1)
        if not isinstance(days, int) or days < 1:
            raise RulesError(f"{cw}: days must be an integer >= 1")
        if days > 1 and not QUANTITIES[q].daily:
            raise RulesError(f"{cw}: days > 1 needs a daily quantity, {q!r} is not")
        unknown = set(c) - {"quantity", "op", "value", "days"}
        if unknown:
            raise RulesError(f"{cw}: unknown key {sorted(unknown)[0]!r}")
        out.append(Condition(q, op, float(_req(c, "value", (int, float), cw)), days))
    return tuple(out)


def parse_rules(doc: dict[str, Any]) -> Rules:
    hazards = doc.get("hazards")
    if not isinstance(hazards, dict) or not hazards:
        raise RulesError("rules: no [hazards.*] tables")
    defaults = doc.get("defaults", {})
    out: dict[str, HazardRule] = {}
    for name, h in hazards.items():
        where = f"hazards.{name}"
        levels = []
        seen = set()
        for i, lv in enumerate(_req(h, "levels", list, where)):
            lw = f"{where}.levels[{i}]"
            try:
                level = WarningLevel.parse(_req(lv, "level", str, lw))
            except ValueError as exc:
                raise RulesError(f"{lw}: {exc}") from None
            if level in seen:
                raise RulesError(f"{lw}: level {level.colour} defined twice")
            seen.add(level)
            all_ = _conditions(lv.get("all", []), f"{lw}.all")
            any_ = _conditions(lv.get("any", []), f"{lw}.any")
            if not all_ and not any_:
                raise RulesError(f"{lw}: needs 'all' or 'any' conditions")
            lead = lv.get("forecast_lead_h", h.get("forecast_lead_h", 24.0))
            if not isinstance(lead, int | float) or isinstance(lead, bool) or lead < 0:
                raise RulesError(f"{lw}: 'forecast_lead_h' must be a number of hours >= 0")
            issue = lv.get("issue", h.get("issue", defaults.get("issue", "auto")))
            if issue not in ISSUE_POLICIES:
                raise RulesError(f"{lw}: 'issue' must be one of {', '.join(ISSUE_POLICIES)}")
            levels.append(LevelRule(level, all_, any_, _req(lv, "basis_zh", str, lw), _req(lv, "basis_en", str, lw),
                                    _req(lv, "guidance_zh", str, lw), _req(lv, "guidance_en", str, lw),
                                    float(lead), issue))
        if not levels:
            raise RulesError(f"{where}: no levels")
        num = (int, float)
        stale_h = _hazard_hours("stale_after_h", name, h, defaults, where, STALE_AFTER_H_FALLBACK)
        out[name] = HazardRule(
            hazard=name, name_zh=_req(h, "name_zh", str, where), name_en=_req(h, "name_en", str, where),
            cma_code=_req(h, "cma_code", str, where), cap_category=_req(h, "cap_category", str, where),
            valid_hours=float(_req(h, "valid_hours", num, where)),
            extend_step_h=float(h.get("extend_step_h", _req(h, "valid_hours", num, where) / 2)),
            downgrade_hold_h=float(h.get("downgrade_hold_h", defaults.get("downgrade_hold_h", 1.0))),
            cancel_hold_h=float(h.get("cancel_hold_h", defaults.get("cancel_hold_h", 1.0))),
            source=_req(h, "source", str, where), unconfirmed=str(h.get("unconfirmed", "")),
            forecast_lead_h=max(lr.forecast_lead_h for lr in levels),
            stale_after_h=stale_h,
            forecast_stale_after_h=max(stale_h, _hazard_hours("forecast_stale_after_h", name, h, defaults, where,
                                                              FORECAST_STALE_AFTER_H_FALLBACK)),
            grid_rollup=_grid_rollup(name, h, defaults, where),
            levels=tuple(sorted(levels, key=lambda r: r.level, reverse=True)),
        )
    rules = Rules(out, *_settings(doc), review=_review(doc))
    rules.acknowledgement = _acknowledgement(doc)
    return rules


def _review(doc: dict[str, Any]) -> ReviewConfig:
    """The [review] table (a bureau's table that leaves a key out takes the packaged value)."""
    given = doc.get("review", {})
    if not isinstance(given, dict):
        raise RulesError("review: expected a table")
    tab = {**_packaged_doc().get("review", {}), **given}
    unknown = set(tab) - {"escalate_after_min", "issue_unhandled_after_min"}
    if unknown:
        raise RulesError(f"review: unknown key {sorted(unknown)[0]!r}")
    out = []
    for key in ("escalate_after_min", "issue_unhandled_after_min"):
        v = tab.get(key, getattr(ReviewConfig, key))
        if not isinstance(v, int | float) or isinstance(v, bool) or v < 0:
            raise RulesError(f"review: '{key}' must be a number of minutes >= 0")
        out.append(float(v))
    return ReviewConfig(*out)


@dataclass(frozen=True)
class AcknowledgementPolicy:
    """[acknowledgement]: per level, minutes a receiver has to acknowledge a warning before it is reminded and the
    warning goes to the fallback subscriptions of its region; levels not listed are never escalated."""

    after_min: dict[str, float] = field(default_factory=lambda: {"red": 15.0, "orange": 30.0})

    def after_s(self, level: str) -> float | None:
        minutes = self.after_min.get(level)
        return None if minutes is None else minutes * 60.0


def _acknowledgement(doc: dict[str, Any]) -> AcknowledgementPolicy:
    """The document's [acknowledgement], else the packaged table's (a bureau's older table keeps its policy)."""
    table = doc.get("acknowledgement", _packaged_doc().get("acknowledgement", {}))
    given = table.get("after_min", {}) if isinstance(table, dict) else None
    if not isinstance(given, dict):
        raise RulesError("acknowledgement: 'after_min' must be a table of level = minutes")
    after: dict[str, float] = {}
    for level, minutes in given.items():
        try:
            colour = WarningLevel.parse(level).colour
        except ValueError as exc:
            raise RulesError(f"acknowledgement.after_min: {exc}") from None
        if not isinstance(minutes, int | float) or isinstance(minutes, bool) or not minutes > 0:
            raise RulesError(f"acknowledgement.after_min.{level}: a number of minutes > 0")
        after[colour] = float(minutes)
    return AcknowledgementPolicy(after)


STALE_AFTER_H_FALLBACK = 36.0  # a hazard no table gives a horizon: the longest packaged one (never the stricter)
FORECAST_STALE_AFTER_H_FALLBACK = 12.0  # the same for forecasts: the packaged [defaults] value


def _hazard_hours(key: str, name: str, h: dict[str, Any], defaults: dict[str, Any], where: str,
                  fallback: float) -> float:
    """A hazard's number of hours ``key`` (a staleness horizon): its own, else the table's [defaults], else the
    packaged table's for the same hazard, then its [defaults] (a bureau's older table keeps the packaged values)."""
    packaged = _packaged_doc()
    v = h.get(key, defaults.get(key, packaged.get("hazards", {}).get(name, {}).get(
        key, packaged.get("defaults", {}).get(key, fallback))))
    if not isinstance(v, int | float) or isinstance(v, bool) or not v > 0:
        raise RulesError(f"{where}: '{key}' must be a number of hours > 0")
    return float(v)


def _grid_rollup(name: str, h: dict[str, Any], defaults: dict[str, Any], where: str) -> GridRollup:
    """The hazard's ``grid_rollup`` (``{method, min}``): its own, else [defaults], else the packaged table's."""
    packaged = _packaged_doc()
    raw = h.get("grid_rollup", defaults.get("grid_rollup", packaged.get("hazards", {}).get(name, {}).get(
        "grid_rollup", packaged.get("defaults", {}).get("grid_rollup", {}))))
    if not isinstance(raw, dict) or set(raw) - {"method", "min"}:
        raise RulesError(f"{where}: 'grid_rollup' must be a table {{method, min}}")
    method = raw.get("method", "area_share")
    value = raw.get("min", 0.1)
    if method not in GRID_ROLLUP_METHODS:
        raise RulesError(f"{where}: grid_rollup 'method' must be one of {list(GRID_ROLLUP_METHODS)}")
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0 \
            or (method == "area_share" and value > 1):
        raise RulesError(f"{where}: grid_rollup 'min' must be > 0 (a share: at most 1)")
    return GridRollup(method, float(value))


@lru_cache(maxsize=1)
def _packaged_doc() -> dict[str, Any]:
    return tomllib.loads(resources.files("warning").joinpath(PACKAGED).read_text(encoding="utf-8"))


def _settings(doc: dict[str, Any]) -> tuple[FlashFloodConfig, FrostConfig, SandstormConfig, DaysConfig,
                                            DroughtConfig]:
    """The [flash_flood], [frost] and [sandstorm] settings; a key the document leaves out is the packaged table's."""
    packaged = _packaged_doc()

    def table(name: str) -> dict[str, Any]:
        given = doc.get(name, {})
        if not isinstance(given, dict):
            raise RulesError(f"{name}: expected a table")
        return {**packaged.get(name, {}), **given}

    def number(tab: dict[str, Any], name: str, key: str) -> float:
        v = tab.get(key)
        if not isinstance(v, int | float) or isinstance(v, bool):
            raise RulesError(f"{name}: '{key}' must be a number")
        return float(v)

    ff = table("flash_flood")
    counties = {str(k): float(v) for k, v in ff.get("counties", {}).items()}
    if any(v <= 0 for v in counties.values()):
        raise RulesError("flash_flood.counties: scales must be > 0")
    fr = table("frost")
    months = tuple(int(m) for m in fr.get("season_months", ()))
    if any(not 1 <= m <= 12 for m in months):
        raise RulesError("frost.season_months: months 1-12")
    sd = table("sandstorm")
    boundary = table("days").get("boundary_bjt_h")
    if not isinstance(boundary, int) or isinstance(boundary, bool) or not 0 <= boundary <= 23:
        raise RulesError("days: 'boundary_bjt_h' must be an hour 0-23 of Beijing time")
    dr = table("drought")
    process = []
    for key in ("process_min_days", "process_end_days"):
        v = dr.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise RulesError(f"drought: '{key}' must be a whole number of days >= 1")
        process.append(v)
    return (FlashFloodConfig(number(ff, "flash_flood", "api_decay"), number(ff, "flash_flood", "wet_api_mm"),
                             number(ff, "flash_flood", "wet_factor"), counties),
            FrostConfig(number(fr, "frost", "air_to_ground_offset_c"), months, number(fr, "frost", "calm_wind_ms")),
            SandstormConfig(number(sd, "sandstorm", "floating_dust_max_wind_ms"),
                            number(sd, "sandstorm", "local_blue_visibility_m")),
            DaysConfig(boundary), DroughtConfig(process[0], process[1], number(dr, "drought", "arid_annual_precip_mm")))


def load_rules(path: Path | None = None) -> Rules:
    if path is None:
        text = resources.files("warning").joinpath(PACKAGED).read_text(encoding="utf-8")
        where = "warning/" + PACKAGED
    else:
        text, where = path.read_text(encoding="utf-8"), str(path)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{where}: {exc}") from None
    try:
        return parse_rules(doc)
    except RulesError as exc:
        raise RulesError(f"{where}: {exc}") from None
