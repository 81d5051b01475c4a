"""Periodic upkeep: run retention (retention.py) and the housekeeping loop that also cleans tenants'
ARCHIVE volumes (housekeeping.py).

Why apart: nothing on a run's path waits for it; it runs on its own timer and can be read on its own."""
