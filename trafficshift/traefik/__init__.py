"""Traefik: the routing file (rendered, written atomically), the API that confirms it, the metrics scraper.

Every Traefik object name trafficshift writes or reads is spelled in `names.py` alone.
"""
