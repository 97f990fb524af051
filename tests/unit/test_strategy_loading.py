"""Strategy files and TOML/YAML configs, and `efsdk run STRATEGY.py --replay` end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from efsdk.errors import ConfigError
from efsdk.itch.codec import frame
from efsdk.itch.generator import SessionGenerator
from efsdk.strategy import load_config, load_strategy_class, make_strategy
from strategies.market_maker import MarketMakerConfig

ROOT = Path(__file__).resolve().parents[2]
MAKER = ROOT / "strategies" / "market_maker.py"


def test_toml_and_yaml_configs_validate_into_the_strategy_model(tmp_path):
    toml = tmp_path / "mm.toml"
    toml.write_text('symbols = ["AAPL", "MSFT"]\nquote_shares = 200\n[risk]\nmax_position = 1000\n')
    config = load_config(MarketMakerConfig, toml)
    assert config.symbols == ("AAPL", "MSFT") and config.quote_shares == 200 and config.risk.max_position == 1000
    yaml = tmp_path / "mm.yaml"
    yaml.write_text("symbols: [AAPL]\nrisk:\n  price_collar: 0.02\n")
    assert load_config(MarketMakerConfig, yaml).risk.price_collar == 0.02
    # command-line overrides win over the file
    assert load_config(MarketMakerConfig, toml, symbols=("NVDA",)).symbols == ("NVDA",)


@pytest.mark.parametrize(
    ("text", "suffix", "message"),
    [
        ('symbols = ["AAPL"]\nquote_sharez = 1\n', ".toml", "quote_sharez: Extra inputs are not permitted"),
        ('symbols = ["AAPL"]\n[risk]\nmax_shares = 1\n', ".toml", "risk.max_shares"),
        ('symbols = ["AAPL"]\nquote_shares = 0\n', ".toml", "quote_shares: Input should be greater than 0"),
        ("symbols = [\n", ".toml", "not valid TOML"),
        ("symbols: [AAPL\n", ".yaml", "not valid YAML"),
        ("- just\n- a list\n", ".yml", "top level must be a table"),
        ("symbols = []", ".ini", "must be .toml, .yaml or .yml"),
    ],
)
def test_bad_configs_name_the_problem(tmp_path, text, suffix, message):
    path = tmp_path / f"c{suffix}"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        load_config(MarketMakerConfig, path)


def test_strategy_files_are_loaded_by_class(tmp_path):
    assert load_strategy_class(MAKER).__name__ == "MarketMaker"
    two = tmp_path / "two.py"
    two.write_text(
        "from efsdk.strategy import Strategy\nclass A(Strategy): pass\nclass B(Strategy): pass\n"
    )
    with pytest.raises(ConfigError, match="2 Strategy subclasses"):
        load_strategy_class(two)
    assert load_strategy_class(two, "B").__name__ == "B"
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ConfigError, match="RuntimeError: boom"):
        load_strategy_class(broken)
    with pytest.raises(ConfigError, match="does not exist"):
        make_strategy(tmp_path / "missing.py")


def test_efsdk_run_strategy_on_a_replayed_file(tmp_path):
    gen = SessionGenerator(6, 40_000, 5)
    day = tmp_path / "day.itch"
    day.write_bytes(b"".join(frame(m) for m in gen))
    symbol = gen.summary.books[0][0]
    config = tmp_path / "mm.toml"
    config.write_text(f'symbols = ["{symbol}"]\nmax_inventory = 200\n')
    out = tmp_path / "run.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="160")
    proc = subprocess.run(
        [sys.executable, "-m", "efsdk.cli", "run", str(MAKER), "--config", str(config), "--replay", str(day),
         "--json", str(out)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(out.read_text())
    assert doc["symbols"] == [symbol] and doc["fills"] > 0 and doc["open_orders"] == 0
    assert abs(doc["positions"][symbol]) <= 300
    assert "MarketMaker on replay" in proc.stdout
    # a driver must be chosen, and only one
    bad = subprocess.run([sys.executable, "-m", "efsdk.cli", "run", str(MAKER), "--config", str(config)],
                         capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert bad.returncode == 1 and "choose one driver" in bad.stderr
