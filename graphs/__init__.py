"""harmonygraph: graphs."""
