"""The rules engine: CEL expressions compiled and evaluated, actions taken."""
