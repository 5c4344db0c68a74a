"""`trafficshift serve`: the aiohttp app, its routes and their validation, OpenAPI, the rollout runner,
the Docker-event provider, the scheduler and the service's own metrics. Only `serve` imports this package.
"""
