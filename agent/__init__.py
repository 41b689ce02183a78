"""harmonygraph: agent."""
