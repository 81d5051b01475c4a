"""The seed APIs other products' clients speak, one slice each (routes + translation)."""
