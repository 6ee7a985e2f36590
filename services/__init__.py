"""Sample FastAPI microservices that the perflab harness starts, loads and measures."""
