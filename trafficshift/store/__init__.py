"""Durable state on disk: rollouts, events and schedules in SQLite, per-app locks, the service's record.

Nothing here imports the service: the CLI finds a running service through `discovery.py`.
"""
