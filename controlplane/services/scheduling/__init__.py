"""Schedules: tick arithmetic (cron, interval) and the scheduler that fires them."""
