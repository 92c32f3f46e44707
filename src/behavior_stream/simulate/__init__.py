"""The generator: a simulated catalog, population and shoppers (the project's default data)."""
