"""Automations: the stored scripts, their versions, parameters, limits, actions, webhooks."""
