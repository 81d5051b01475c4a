"""Who is who: tenants and users (tenants.py), spaces and what each role may do in them (spaces.py),
tenant variables and encrypted secrets, and per-user rate limits.

Why together: every service asks the same questions of this package (may this principal see and do this?),
and the answer must be the same for all of them."""
