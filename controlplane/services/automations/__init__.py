"""Automations: the stored scripts (service.py), the rules a body must satisfy and the versions it
freezes (body.py), typed parameters, resource limits, seed 004's actions, webhooks, and the automations
directory synced from disk (catalog.py).

Why together: an automation is written from four places (API, directory, dialects, actions) and one
package holds every rule about what may be stored."""
