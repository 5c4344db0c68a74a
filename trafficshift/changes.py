"""Whether a promote of a compose-backed app would change anything: the new spec against the live colour's.

The live colour's containers are the truth of what runs: each carries the digest of its spec (its
`trafficshift.spec` label, compose/fingerprint.py), so the answer holds also when the state folder has no
record of the spec (one made before specs were recorded).
"""

from __future__ import annotations

from trafficshift.compose.fingerprint import app_doc, digest
from trafficshift.compose.spec import SpecDoc
from trafficshift.errors import Unchanged
from trafficshift.models import AppSpec, AppState
from trafficshift.ports import ContainerRuntime


async def spec_to_deploy(
    containers: ContainerRuntime, *, app: AppSpec, state: AppState, image: str, image_id: str
) -> SpecDoc | None:
    """The spec a promote of `app` to `image` deploys (None when the app is not compose-backed).

    Raise Unchanged when the live colour runs it already: its `replicas` containers all running, each
    labelled with the same digest (the image's id included, so a rebuilt tag is a change).
    """
    doc = app_doc(app, image=image, image_id=image_id)
    if doc is None or state.colour is None:
        return doc
    new = digest(doc)
    live = await containers.list(app=app.name, colour=state.colour)
    if len(live) == app.replicas and all(c.running and c.spec == new for c in live):
        raise Unchanged(
            app.name,
            f"{app.name}: nothing changed: {state.colour} runs this spec already ({image}, spec {new});"
            " nothing started",
        )
    return doc
