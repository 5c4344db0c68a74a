"""Benchmarks and the demo: real Traefik, real Docker, real load (`make bench`, `make demo`)."""
