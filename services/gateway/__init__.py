"""The gateway: an async front door to the catalog (pooling, timeouts, retries, a breaker)."""
