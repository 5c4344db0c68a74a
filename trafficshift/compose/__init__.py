"""Apps whose container spec is a Compose service: Compose normalises it, trafficshift applies it."""
