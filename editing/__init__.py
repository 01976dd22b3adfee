"""Feature-level model editing: the SHIFT experiment (spurious-feature removal) and its data."""
