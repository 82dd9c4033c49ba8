"""`make test-reliability`: faults and load on real processes (see conftest.py)."""
