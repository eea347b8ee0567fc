"""End-to-end tests; a package so that the server fixture is package-scoped."""
