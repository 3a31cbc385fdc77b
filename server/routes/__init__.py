"""One module per API surface; each exposes ``register(router, app)``."""
