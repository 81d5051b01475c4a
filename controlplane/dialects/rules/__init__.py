"""Seed 003's automation rules API (/app_offering_automation_rules)."""
