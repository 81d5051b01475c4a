"""What happened, told to whoever listens: event publication and notifications."""
