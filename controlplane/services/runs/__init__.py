"""Runs as clients see them: submit, read, list, logs, artifacts, export, usage."""
