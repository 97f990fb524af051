"""Strategies: a config model plus a class with lifecycle hooks.

The same strategy class runs on every driver; a driver only decides where
book events come from and where orders go (:mod:`efsdk.strategy.drivers`):
a replayed file or capture with fills from the simulator's matching engine
mirroring the replayed book, a live feed with a SoupBinTCP order session, or
the embedded exchange simulator.
"""

from efsdk.orders.manager import Order, OrderState, OrderUpdate, Position, UpdateKind
from efsdk.pipeline import BookEvent, Trade
from efsdk.strategy.base import Strategy, StrategyConfig
from efsdk.strategy.context import DAY, IOC, StrategyContext
from efsdk.strategy.drivers import RunResult, SimRunResult, run_live, run_replay, run_sim
from efsdk.strategy.loading import load_config, load_strategy_class, make_strategy
from efsdk.strategy.runtime import StrategyRuntime

__all__ = [
    "DAY",
    "IOC",
    "BookEvent",
    "Order",
    "OrderState",
    "OrderUpdate",
    "Position",
    "RunResult",
    "SimRunResult",
    "Strategy",
    "StrategyConfig",
    "StrategyContext",
    "StrategyRuntime",
    "Trade",
    "UpdateKind",
    "load_config",
    "load_strategy_class",
    "make_strategy",
    "run_live",
    "run_replay",
    "run_sim",
]
