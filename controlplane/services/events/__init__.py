"""What happened, told to whoever listens: in-process publication of run and automation events
(hooks.py), and per-user notifications (notifications.py, which the processes dialect's mail also uses).

Why apart: the engine publishes without knowing its listeners (rules, notifications, dialects), so none of
them is imported by execution/."""
