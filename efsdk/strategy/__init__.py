"""Strategies: a config model plus a class with lifecycle hooks.

The same strategy class runs on every driver; a driver only decides where
book events come from (a replayed file or buffer today; the live feed and the
exchange simulator plug into the same :class:`~efsdk.pipeline.FeedHandler`).
"""

from efsdk.strategy.base import Strategy, StrategyConfig, StrategyContext
from efsdk.strategy.runner import ReplayResult, run_replay

__all__ = ["ReplayResult", "Strategy", "StrategyConfig", "StrategyContext", "run_replay"]
