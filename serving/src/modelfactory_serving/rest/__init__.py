"""The HTTP layer: thin FastAPI routes and an ASGI middleware over the data plane."""
