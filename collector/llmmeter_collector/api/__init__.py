"""The REST API: routes, key auth and roles, rate limits at the edge, OpenAPI."""
