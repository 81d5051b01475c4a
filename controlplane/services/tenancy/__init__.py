"""Tenants, users, tokens, spaces, variables and secrets, rate limits."""
