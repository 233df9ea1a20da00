"""The HTTP surfaces: events and webhooks in, approvals, tools and Graph; the only package that imports FastAPI."""
