"""Risk score of a device (0–100): what its telemetry says now, weighed by its maintenance profile.

Two parts, both shown to people so the number can be explained:
- *signal*: the rules that fired, by severity. Several rules firing together are combined as independent chances
  (``1 - Π(1 - p)``), so two medium findings weigh more than one, and nothing goes past 100.
- *profile factor* (from ``repair.statistics.maintenance_profile``): a device that fails more often than its peers
  of the same type, has a low maintenance score, is old, or had advanced (on-site) faults in the last year is more
  likely to be heading for a breakdown. The factor is 1.0 for an average device and stays within 0.8–2.0.

The score is ``signal × factor``, capped at 100. Bands: low < 40 ≤ medium < 70 ≤ high.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterable

from repair.statistics import DeviceProfile

SEVERITY_WEIGHT = {"low": 0.25, "medium": 0.45, "high": 0.7, "critical": 0.9}
SEVERITY_LABELS = {"low": "低", "medium": "中", "high": "高", "critical": "紧急"}
BANDS = ((70, "high", "高风险"), (40, "medium", "中风险"), (0, "low", "低风险"))


@dataclass
class Risk:
    score: int
    band: str
    label: str
    signal: float  # 0–1, from the rules that fired
    factor: float  # the profile's weight
    reasons: list[str]  # Chinese, for the ticket and the console

    def as_dict(self) -> dict:
        return asdict(self)


def band(score: int) -> tuple[str, str]:
    return next((key, label) for floor, key, label in BANDS if score >= floor)


def signal(severities: Iterable[str]) -> float:
    remaining = 1.0
    for severity in severities:
        remaining *= 1.0 - SEVERITY_WEIGHT.get(severity, SEVERITY_WEIGHT["medium"])
    return 1.0 - remaining


def profile_factor(profile: DeviceProfile | None) -> tuple[float, list[str]]:
    """(factor, reasons) from the device's fault history; (1.0, []) without a profile."""
    if profile is None:
        return 1.0, []
    factor, reasons = 1.0, []
    if profile.relative_risk is not None and profile.relative_risk > 1.0:
        extra = min(profile.relative_risk - 1.0, 2.0) * 0.2
        factor += extra
        reasons.append(f"近12个月故障率为同类设备的 {profile.relative_risk:g} 倍")
    elif profile.relative_risk is not None and profile.relative_risk < 0.5:
        factor -= 0.1
    if profile.maintenance_score < 90:
        factor += (90 - profile.maintenance_score) / 200  # score 50 → +0.2
        reasons.append(f"维护评分 {profile.maintenance_score}")
    if profile.age_years is not None and profile.age_years >= 5:
        factor += 0.2 if profile.age_years >= 10 else 0.1
        reasons.append(f"已使用 {profile.age_years:g} 年")
    advanced = profile.faults_12m.get("advanced", 0)
    if advanced:
        factor += min(advanced, 3) * 0.1
        reasons.append(f"近12个月需上门维修的故障 {advanced} 次")
    if profile.days_since_last_preventive is None or profile.days_since_last_preventive > 365:
        factor += 0.05
        reasons.append("超过一年未做预防性维护")
    return round(min(max(factor, 0.8), 2.0), 2), reasons


def score(severities: Iterable[str], profile: DeviceProfile | None) -> Risk:
    """The device's risk from the severities of the rules that fired now and its maintenance profile."""
    severities = list(severities)
    sig = signal(severities)
    factor, reasons = profile_factor(profile)
    value = min(100, round(100 * sig * factor))
    key, label = band(value)
    return Risk(score=value, band=key, label=label, signal=round(sig, 3), factor=factor, reasons=reasons)
