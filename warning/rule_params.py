"""The parameters of the signal kernels in ``indices/``, built from the warning rules (one place per rule).

The kernels hold no warning thresholds: a caller that wants, say, the Order No. 16 rainstorm level of gridded
accumulations passes ``rainstorm_criteria(rules)`` with the rules the service runs on (``warning.rules.load_rules``
of EWS_RULES, else the packaged ``warning/data/rules.toml``). Each builder reads a hazard's levels and checks that
they have the form the kernel computes (quantities and comparison operators); a bureau's table that the kernel
cannot express raises ``RulesError`` naming the hazard and level rather than giving a silently different answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from indices.wind import ColdWaveCriterion
from warning.rules import Condition, HazardRule, LevelRule, Rules, RulesError

_RAIN = re.compile(r"rain_(\d+)h")


def _levels(rules: Rules, hazard: str) -> list[LevelRule]:
    rule: HazardRule | None = rules.get(hazard)
    if rule is None:
        raise RulesError(f"rules: no hazard {hazard!r}")
    return list(rule.levels)


def _fail(hazard: str, lr: LevelRule, kernel: str, form: str) -> RulesError:
    return RulesError(f"hazards.{hazard} level {lr.level.colour}: {kernel} computes {form}; this level has "
                      f"{[(c.quantity, c.op, c.value, c.days) for c in lr.conditions]}")


def _one(lr: LevelRule, conds: tuple[Condition, ...], quantity: str | Callable[[str], bool], op: str
         ) -> Condition | None:
    """The one condition of ``conds`` on ``quantity`` (a name or a predicate) with operator ``op``, else None."""
    match = [c for c in conds if (c.quantity == quantity if isinstance(quantity, str) else quantity(c.quantity))]
    return match[0] if len(match) == 1 and match[0].op == op and match[0].days == 1 else None


def rainstorm_criteria(rules: Rules) -> dict[str, tuple[float, float]]:
    """``indices.precip.rainstorm_signal_level`` criteria: colour -> (window hours, mm) of each level's single
    ``rain_<N>h >= mm`` condition ([hazards.rainstorm])."""
    out = {}
    for lr in _levels(rules, "rainstorm"):
        c = _one(lr, lr.all, lambda q: _RAIN.fullmatch(q) is not None, ">=")
        if c is None or lr.any or len(lr.all) != 1:
            raise _fail("rainstorm", lr, "indices.precip.rainstorm_signal_level", "one rain_<N>h >= condition")
        m = _RAIN.fullmatch(c.quantity)
        assert m is not None
        out[lr.level.colour] = (float(m[1]), c.value)
    return out


def gale_criteria(rules: Rules) -> dict[str, tuple[float, float]]:
    """``indices.wind.gale_signal_level`` criteria: colour -> (mean wind, gust) m s-1 of each level's
    ``any = [wind_max_day >= v, gust_max_day >= g]`` ([hazards.gale])."""
    out = {}
    for lr in _levels(rules, "gale"):
        mean, gust = _one(lr, lr.any, "wind_max_day", ">="), _one(lr, lr.any, "gust_max_day", ">=")
        if mean is None or gust is None or lr.all or len(lr.any) != 2:
            raise _fail("gale", lr, "indices.wind.gale_signal_level", "mean wind >= v or gust >= g")
        out[lr.level.colour] = (mean.value, gust.value)
    return out


def cold_wave_criteria(rules: Rules) -> dict[str, ColdWaveCriterion]:
    """``indices.wind.cold_wave_signal_level`` criteria: colour -> ColdWaveCriterion of each level's
    ``all = [tmin_drop_<24|48>h >= d, tmin_day <= t, wind_max_day >= w]`` ([hazards.cold_wave])."""
    out = {}
    for lr in _levels(rules, "cold_wave"):
        drop = _one(lr, lr.all, lambda q: q in ("tmin_drop_24h", "tmin_drop_48h"), ">=")
        tmin, wind = _one(lr, lr.all, "tmin_day", "<="), _one(lr, lr.all, "wind_max_day", ">=")
        if drop is None or tmin is None or wind is None or lr.any or len(lr.all) != 3:
            raise _fail("cold_wave", lr, "indices.wind.cold_wave_signal_level",
                        "a Tmin drop >= d, Tmin <= t and wind >= w")
        hours = 24 if drop.quantity == "tmin_drop_24h" else 48
        out[lr.level.colour] = ColdWaveCriterion(hours, drop.value, tmin.value, wind.value)
    return out


def frost_criteria(rules: Rules) -> dict[str, float]:
    """``indices.frost.frost_intensity`` criteria: colour -> ground minimum (degC) of each level's single
    ``ground_tmin_day <= g`` condition ([hazards.frost]). The offset is ``rules.frost.air_to_ground_offset_c``."""
    out = {}
    for lr in _levels(rules, "frost"):
        c = _one(lr, lr.all, "ground_tmin_day", "<=")
        if c is None or lr.any or len(lr.all) != 1:
            raise _fail("frost", lr, "indices.frost.frost_intensity", "one ground_tmin_day <= condition")
        out[lr.level.colour] = c.value
    return out


def sandstorm_criteria(rules: Rules) -> dict[str, float]:
    """``indices.wind.sandstorm_signal_level`` criteria: colour -> visibility (m) of each level's
    ``visibility < v`` condition ([hazards.sandstorm]); the levels' other conditions are the dust discriminator
    (``sandstorm_dust_discriminator``), which the kernel takes as its ``dust`` input."""
    out = {}
    for lr in _levels(rules, "sandstorm"):
        c = _one(lr, lr.all, "visibility", "<")
        if c is None or lr.any:
            raise _fail("sandstorm", lr, "indices.wind.sandstorm_signal_level", "visibility < v (and dust)")
        out[lr.level.colour] = c.value
    return out


def sandstorm_dust_discriminator(rules: Rules) -> tuple[float, float]:
    """(wind_now at least, rh_now below) of the sandstorm levels' dust discriminator, the same on every level:
    ``dust = wind >= w and rh < r`` is the ``dust`` input of ``indices.wind.sandstorm_signal_level``."""
    found = set()
    for lr in _levels(rules, "sandstorm"):
        wind, rh = _one(lr, lr.all, "wind_now", ">="), _one(lr, lr.all, "rh_now", "<")
        if wind is None or rh is None or len(lr.all) != 3:
            raise _fail("sandstorm", lr, "the dust discriminator", "wind_now >= w and rh_now < r")
        found.add((wind.value, rh.value))
    if len(found) != 1:
        raise RulesError(f"hazards.sandstorm: the dust discriminator differs between levels: {sorted(found)}")
    return found.pop()


def hot_spell_criterion(rules: Rules) -> tuple[float, int]:
    """(threshold degC, min days) for ``indices.heat.hot_spell``: the heat level whose condition spans several
    days (``tmax_day >= t`` with ``days = N``; Order No. 16 yellow) ([hazards.heat])."""
    spells = [c for lr in _levels(rules, "heat") for c in lr.conditions if c.days > 1]
    if len(spells) != 1 or spells[0].quantity != "tmax_day" or spells[0].op != ">=":
        raise RulesError("hazards.heat: indices.heat.hot_spell needs one tmax_day >= condition with days > 1; "
                         f"found {[(c.quantity, c.op, c.value, c.days) for c in spells]}")
    return spells[0].value, spells[0].days
