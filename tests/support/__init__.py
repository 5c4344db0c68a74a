"""Test, benchmark and demo support: local images, a real Traefik on loopback, HTTP load."""
