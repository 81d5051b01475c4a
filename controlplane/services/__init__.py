"""Business logic, one domain package each: execution (the run engine), runs (what clients see of runs),
automations, scheduling, tenancy, events, rules and upkeep; platform.py wires them into one Platform.

Why here: everything a run must obey (roles, spaces, quotas, deadlines, status moves) is decided in this
layer, above any web framework (import-linter) and above SQL (store/), so every surface gets the same rules."""
