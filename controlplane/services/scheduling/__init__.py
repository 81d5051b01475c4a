"""Schedules: tick arithmetic for cron and interval schedules (ticks.py, pure), and the scheduler that
fires due ticks under a lease so only one replica does (scheduler.py).

Why apart: time rules are pure functions tested on their own, and the firing loop is one small consumer."""
