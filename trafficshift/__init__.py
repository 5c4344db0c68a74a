"""trafficshift: zero-downtime weighted cutovers of Docker apps behind Traefik."""

__version__ = "0.1.0"
