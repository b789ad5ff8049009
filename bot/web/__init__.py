"""What every router shares: the runtime and database as dependencies, API keys and roles,
request limits."""
