"""The rules engine behind seed 003: CEL expressions parsed and checked (language.py), the events that
trigger rules (triggers.py), and the engine that evaluates them and takes their actions (engine.py).

Why a service and not a dialect: rules react to every surface's runs and automations, while
dialects/rules only translates seed 003's resource shape."""
