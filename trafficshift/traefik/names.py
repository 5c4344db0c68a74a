"""The names of the Traefik objects trafficshift defines for an app: the one place that spells them.

They are part of the contract (README, "How a promote goes"): dashboards and Prometheus series are labelled
with them (`web-green@file`), and the config refuses an app whose name would be another app's service.
Pure: no I/O, so the config, the renderer, the API adapter and the analysis can all ask here.
"""

from __future__ import annotations

from trafficshift.models import Colour

# Traefik suffixes every object with `@<provider>`: `file` for the dynamic files, `redis` for the Redis
# backend (`traefik.provider`).
PROVIDER = "file"


def router(app: str) -> str:
    """The app's router: its rule, entrypoints and middlewares, in front of the weighted service."""
    return app


def weighted_service(app: str) -> str:
    """The weighted service that splits the app's traffic between its colours."""
    return app


def colour_service(app: str, colour: Colour) -> str:
    """One colour's loadBalancer service (`web-blue`), a child of the weighted service."""
    return f"{app}-{colour}"


def retry_middleware(app: str) -> str:
    """The app's retry middleware (connection errors to a container that is shutting down)."""
    return f"{app}-retry"


def mirror_router(app: str) -> str:
    """The router of the mirror phase: the app's rule and the mirrored methods, in front of the mirror."""
    return f"{app}-mirror"


def mirror_service(app: str) -> str:
    """The mirroring service of the mirror phase: the weighted service, with copies to the new colour."""
    return f"{app}-mirror"


def mirror_file(app: str) -> str:
    """The stem of the app's mirror file (`web.mirror` -> `web.mirror.yml`); no app name has a dot."""
    return f"{app}.mirror"


# Pinned routers (models.Pin) are `<app>-pin-<name>`: the prefix keeps them apart from other apps' routers.
_PIN_INFIX = "-pin-"


def pin_router(app: str, pin: str) -> str:
    """The router of one of the app's pins (`web-pin-canary-always`): some requests to one colour."""
    return f"{app}{_PIN_INFIX}{pin}"


def pin_of_router(app: str, router_name: str) -> str | None:
    """The pin whose router of `app` is called `router_name` (no provider suffix), or None."""
    prefix = f"{app}{_PIN_INFIX}"
    return (router_name.removeprefix(prefix) or None) if router_name.startswith(prefix) else None


# The pin names of the header/cookie canary.
CANARY_ALWAYS = "canary-always"
CANARY_NEVER = "canary-never"


def trial_file(app: str) -> str:
    """The dynamic file (without `.yml`) in which new router options are tried before the app's file."""
    return f"{app}.trial"


def trial_router(app: str, options: str) -> str:
    """The router that tries the app's router options (entrypoints, TLS, middlewares) on no real request.

    Named after a digest of those `options`: a stale view of a trial left by a killed run is a view of the
    same options, so it cannot pass or fail the wrong ones.
    """
    return f"{app}-trial-{options}"


def trial_retry_middleware(app: str) -> str:
    """The trial router's own copy of the app's retry middleware (the app's may not exist yet)."""
    return f"{app}-trial-retry"


def owns(app: str, name: str) -> bool:
    """Whether `name` is one of the Traefik objects of `app` (so no other app may be called that)."""
    return (
        colour_of_service(app, name) is not None
        or name == retry_middleware(app)
        or name.startswith((f"{app}{_PIN_INFIX}", f"{app}-trial-"))
    )


def qualified(name: str, provider: str = PROVIDER) -> str:
    """`name` as Traefik's API and metrics show it, with the provider suffix (`web-green@file`)."""
    return f"{name}@{provider}"


def colour_of_service(app: str, service: str) -> Colour | None:
    """The colour whose service of `app` is called `service`, or None when it is not one of them."""
    return next((colour for colour in Colour if service == colour_service(app, colour)), None)
