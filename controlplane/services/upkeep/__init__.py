"""Periodic upkeep: run retention, ARCHIVE clean-up."""
