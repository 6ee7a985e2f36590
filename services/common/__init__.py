"""Pieces every sample service shares: request context, logging, metrics, middleware."""
