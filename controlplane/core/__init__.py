"""The vocabulary every layer shares: settings, states and their transition table, the error tree,
wire schemas, auth principals, the filter language and metrics.

Why at the bottom: it imports nothing else of ours, so any layer may use it and none can drag another in."""
