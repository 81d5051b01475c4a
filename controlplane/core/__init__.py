"""Core: settings, states, errors, schemas, auth helpers and metrics; imports nothing else of ours."""
