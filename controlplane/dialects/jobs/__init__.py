"""Seed 000's automations module (/api/core/automations): jobs over our runs."""
