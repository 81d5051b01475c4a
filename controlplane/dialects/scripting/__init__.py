"""Seed 002's scripting app (/scripting): one script execution is one run."""
