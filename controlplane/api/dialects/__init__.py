"""One router per seed API dialect, translating shapes over the native services."""
