"""The HTTP edge of the native API: routers (routes/, one module per seed-004 resource), the error
envelope (errors.py), request ids, size limits and HTTP metrics (middleware.py), and the FastAPI dependencies
that turn a request into a principal and a platform (deps.py).

Why apart: nothing below this package knows it is serving HTTP (import-linter forbids fastapi and starlette
under services/, backends/, store/, db/ and core/), so every rule holds for the CLI, the scheduler and the
rules engine exactly as for an API call."""
