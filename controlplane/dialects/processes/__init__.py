"""Seed 001's processes API (/api/v1/processes): processes, jobs, reports."""
