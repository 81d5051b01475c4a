"""HTTP routers: the native API (routes/) and the seed dialects (dialects/); no business logic here."""
