"""Runtime: the pipeline users deploy (torch backend so far)."""

from earlytom.runtime.pipeline import EarlyTomPipeline, RunResult
from earlytom.runtime.timing import StageTimes

__all__ = ["EarlyTomPipeline", "RunResult", "StageTimes"]
