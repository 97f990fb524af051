"""efsdk: kernel-bypass market data to pure-Python order books and strategies."""

__version__ = "0.1.0"
