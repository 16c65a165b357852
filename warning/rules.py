"""Warning criteria loaded from ``warning/data/rules.toml`` (or a bureau's own file) and validated at start.

A malformed table stops the service with a message naming the hazard, level and key, so a typo in a threshold
never silently disables a warning.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from warning.records import WarningLevel

OPS = {">=": lambda v, t: v >= t, ">": lambda v, t: v > t, "<=": lambda v, t: v <= t, "<": lambda v, t: v < t}
CAP_SEVERITY = {WarningLevel.BLUE: "Minor", WarningLevel.YELLOW: "Moderate", WarningLevel.ORANGE: "Severe",
                WarningLevel.RED: "Extreme"}
LEVEL_ZH = {WarningLevel.BLUE: "蓝色", WarningLevel.YELLOW: "黄色", WarningLevel.ORANGE: "橙色",
            WarningLevel.RED: "红色"}
CMA_LEVEL_CODE = {WarningLevel.BLUE: "01", WarningLevel.YELLOW: "02", WarningLevel.ORANGE: "03",
                  WarningLevel.RED: "04"}


class RulesError(ValueError):
    pass


@dataclass(frozen=True)
class LevelRule:
    level: WarningLevel
    op: str
    threshold: float
    consecutive_days: int
    basis_zh: str
    basis_en: str
    guidance_zh: str
    guidance_en: str

    def holds(self, value: float) -> bool:
        return bool(OPS[self.op](value, self.threshold))


@dataclass(frozen=True)
class HazardRule:
    hazard: str
    name_zh: str
    name_en: str
    cma_code: str
    cap_category: str
    element: str
    valid_hours: int
    source: str
    levels: tuple[LevelRule, ...]  # most severe first

    def level_rule(self, level: WarningLevel) -> LevelRule:
        for r in self.levels:
            if r.level == level:
                return r
        raise KeyError(level)


def _req(d: dict[str, Any], key: str, typ: type | tuple[type, ...], where: str) -> Any:
    if key not in d:
        raise RulesError(f"{where}: missing '{key}'")
    v = d[key]
    if not isinstance(v, typ) or isinstance(v, bool):
        raise RulesError(f"{where}: '{key}' has the wrong type ({type(v).__name__})")
    return v


def parse_rules(doc: dict[str, Any]) -> dict[str, HazardRule]:
    hazards = doc.get("hazards")
    if not isinstance(hazards, dict) or not hazards:
        raise RulesError("rules: no [hazards.*] tables")
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
            op = _req(lv, "op", str, lw)
            if op not in OPS:
                raise RulesError(f"{lw}: op must be one of {sorted(OPS)}")
            days = int(lv.get("consecutive_days", 1))
            if days < 1:
                raise RulesError(f"{lw}: consecutive_days must be >= 1")
            levels.append(LevelRule(level, op, float(_req(lv, "threshold", (int, float), lw)), days,
                                    _req(lv, "basis_zh", str, lw), _req(lv, "basis_en", str, lw),
                                    _req(lv, "guidance_zh", str, lw), _req(lv, "guidance_en", str, lw)))
        if not levels:
            raise RulesError(f"{where}: no levels")
        out[name] = HazardRule(
            hazard=name, name_zh=_req(h, "name_zh", str, where), name_en=_req(h, "name_en", str, where),
            cma_code=_req(h, "cma_code", str, where), cap_category=_req(h, "cap_category", str, where),
            element=_req(h, "element", str, where), valid_hours=int(_req(h, "valid_hours", int, where)),
            source=_req(h, "source", str, where),
            levels=tuple(sorted(levels, key=lambda r: r.level, reverse=True)),
        )
    return out


def load_rules(path: Path | None = None) -> dict[str, HazardRule]:
    if path is None:
        text = resources.files("warning").joinpath("data/rules.toml").read_text(encoding="utf-8")
        where = "warning/data/rules.toml"
    else:
        text, where = path.read_text(encoding="utf-8"), str(path)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{where}: {exc}") from None
    return parse_rules(doc)
