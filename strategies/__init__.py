"""Example strategies written against the public efsdk API only."""
