"""Business logic: automations, runs and their supervision, tenancy, the automations directory."""
