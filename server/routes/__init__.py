"""One module per API surface; each exposes ``register(router, ...)``, taking the services
it uses (never the app), and adds its routes as a route group with its error renderer."""
