"""What every pipeline stage returns. A leaf module: stages import it, the orchestrator
(`railflow.pipeline`) imports the stages, so imports flow one way."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class StageResult:
    """What a stage produced: rows processed, where outputs landed, headline numbers."""

    rows: int | None = None
    outputs: list[str] = field(default_factory=list)
    metrics: dict[str, object] = field(default_factory=dict)
