"""NASDAQ TotalView-ITCH 5.0: layout table, codec, file readers, generator."""
