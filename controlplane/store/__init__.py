"""Repositories: every SQL statement of the control plane lives here, behind small functions."""
