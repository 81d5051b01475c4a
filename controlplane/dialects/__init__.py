"""The seed APIs other products' clients speak, one slice each: routes and the translation service side
by side, so a dialect can be read, changed or dropped as one folder.

- jobs: seed 000, the automations module at /api/core/automations;
- processes: seed 001, the processes API at /api/v1/processes (jobs, mail and notifications);
- scripting: seed 002, the scripting app at /scripting;
- rules: seed 003, the automation rules at /app_offering_automation_rules.

Why this shape: each dialect only translates. Runs go through services/runs (one path for quotas,
deadlines and records), and import-linter keeps the dialects independent of each other."""
