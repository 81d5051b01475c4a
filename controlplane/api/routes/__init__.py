"""Native API routers, one module per resource of seed 004 (automations, runs, usage, spaces, tokens,
variables, notifications, health). A route parses, calls one service method and shapes the answer; the
checks (roles, spaces, quotas) live in the services so that the dialects and the CLI get them too."""
