"""HTTP: request bodies, responses, security headers, the OpenAPI document, the routes."""
