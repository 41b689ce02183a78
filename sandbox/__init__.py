"""harmonygraph: sandbox."""
