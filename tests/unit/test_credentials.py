"""Docker's registry credentials as the Docker CLI finds them: config.json's `auths`, `credsStore` and
`credHelpers`, with real helper programs (scripts on PATH) answering the helper protocol."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from trafficshift.credentials import (
    DOCKER_HUB_KEY,
    Credentials,
    lookup,
    parse_config,
    qualified,
    registry_of,
)


@pytest.mark.parametrize(
    ("image", "registry"),
    [
        ("busybox", "docker.io"),
        ("busybox:1.36", "docker.io"),
        ("example/web:1.0", "docker.io"),
        ("docker.io/library/busybox", "docker.io"),
        ("index.docker.io/example/web", "docker.io"),
        ("ghcr.io/acme/web:2", "ghcr.io"),
        ("localhost/web", "localhost"),
        ("localhost:5000/web:1", "localhost:5000"),
        ("127.0.0.1:5000/web", "127.0.0.1:5000"),
        ("reg.example:443/team/web@sha256:" + "a" * 64, "reg.example:443"),
    ],
)
def test_the_registry_of_a_reference_is_dockers(image: str, registry: str) -> None:
    assert registry_of(image) == registry


@pytest.mark.parametrize(
    ("image", "full"),
    [
        ("busybox", "docker.io/library/busybox"),
        ("busybox:1.36", "docker.io/library/busybox:1.36"),
        ("example/web:1.0", "docker.io/example/web:1.0"),
        ("docker.io/example/web", "docker.io/example/web"),
        ("ghcr.io/acme/web:2", "ghcr.io/acme/web:2"),
    ],
)
def test_a_reference_qualified_names_its_registry(image: str, full: str) -> None:
    assert qualified(image) == full


def write_config(tmp_path: Path, doc: object) -> Path:
    path = tmp_path / "docker" / "config.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_auths_entries_are_decoded_and_found_by_host_whatever_the_key_looks_like(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        {
            "auths": {
                DOCKER_HUB_KEY: {"auth": basic("hubuser", "hub:pass")},
                "https://ghcr.io/v2/": {"auth": basic("gh", "token")},
                "reg.example": {"identitytoken": "idtok"},
                "marker.example": {},
            }
        },
    )
    hub = lookup("example/web:1", path=path)
    assert hub.credentials == Credentials(server=DOCKER_HUB_KEY, username="hubuser", password="hub:pass")
    assert hub.note == f"credentials for docker.io from {path}"
    gh = lookup("ghcr.io/acme/web", path=path).credentials
    assert gh is not None
    assert (gh.username, gh.password) == ("gh", "token")
    token = lookup("reg.example/web", path=path).credentials
    assert token is not None
    assert token.auth() == {"identitytoken": "idtok", "serveraddress": "reg.example"}
    assert lookup("marker.example/web", path=path).credentials is None
    nothing = lookup("quay.io/x/y", path=path)
    assert (nothing.credentials, nothing.note) == (None, f"no credentials for quay.io in {path}")


def test_the_auth_header_carries_user_password_and_server() -> None:
    creds = Credentials(server="ghcr.io", username="u", password="p")
    assert creds.auth() == {"username": "u", "password": "p", "serveraddress": "ghcr.io"}
    assert "p" not in repr(creds)  # secrets never printed


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("{not json", "Expecting property name"),
        ("[]", "not a JSON object"),
        ('{"auths": {"x": "y"}}', "auths: expected an object of objects"),
        ('{"credHelpers": {"x": 1}}', "credHelpers"),
        ('{"credsStore": 3}', "credsStore"),
        ('{"auths": {"https://index.docker.io/v1/": {"auth": "%%%"}}}', "not base64"),
    ],
)
def test_a_broken_config_gives_no_credentials_and_says_why(tmp_path: Path, text: str, why: str) -> None:
    path = write_config(tmp_path, text)
    found = lookup("docker.io/x/y", path=path)
    assert found.credentials is None
    assert found.note.startswith("no credentials: ")
    assert why in found.note


def test_a_missing_config_is_no_credentials(tmp_path: Path) -> None:
    found = lookup("busybox", path=tmp_path / "nowhere" / "config.json")
    assert (found.credentials, found.registry) == (None, "docker.io")
    assert "does not exist" in found.note


def test_the_config_is_where_docker_reads_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(tmp_path, {"auths": {"reg.example": {"auth": basic("u", "p")}}})
    monkeypatch.setenv("DOCKER_CONFIG", str(path.parent))
    assert lookup("reg.example/web").note == f"credentials for reg.example from {path}"
    monkeypatch.delenv("DOCKER_CONFIG")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert str(tmp_path / "home" / ".docker" / "config.json") in lookup("reg.example/web").note


# A credential helper as docker-credential-helpers write them: `get` reads the server on stdin. This one
# answers from a JSON file of server -> [user, secret], and logs each server it was asked about.
HELPER = """#!/bin/sh
[ "$1" = get ] || { echo "unknown action $1"; exit 1; }
server=$(cat)
echo "$server" >> "{log}"
exec python3 - "$server" <<'EOF'
import json, sys
known = json.load(open("{known}"))
if sys.argv[1] not in known:
    print("credentials not found in native keychain")
    sys.exit(1)
user, secret = known[sys.argv[1]]
print(json.dumps({"ServerURL": sys.argv[1], "Username": user, "Secret": secret}))
EOF
"""


@pytest.fixture
def helpers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PATH folder with `docker-credential-fake` (knows two servers) and `docker-credential-broken`."""
    folder = tmp_path / "bin"
    folder.mkdir()
    known = tmp_path / "known.json"
    known.write_text(json.dumps({"ghcr.io": ["gh", "s3cret"], DOCKER_HUB_KEY: ["<token>", "hubtoken"]}))
    fake = folder / "docker-credential-fake"
    fake.write_text(HELPER.replace("{log}", str(tmp_path / "asked.log")).replace("{known}", str(known)))
    broken = folder / "docker-credential-broken"
    broken.write_text("#!/bin/sh\necho 'error getting credentials: the keyring is locked' >&2\nexit 3\n")
    for script in (fake, broken):
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return tmp_path


def test_a_credential_store_is_asked_with_the_server_on_stdin(helpers: Path) -> None:
    path = write_config(helpers, {"credsStore": "fake", "auths": {"ghcr.io": {}}})
    gh = lookup("ghcr.io/acme/web:1", path=path)
    assert gh.credentials == Credentials(server="ghcr.io", username="gh", password="s3cret")
    assert gh.note == "credentials for ghcr.io from docker-credential-fake"
    # `<token>` as the user: the secret is an identity token.
    hub = lookup("busybox", path=path)
    assert hub.credentials == Credentials(server=DOCKER_HUB_KEY, identity_token="hubtoken")
    none = lookup("quay.io/x/y", path=path)
    assert (none.credentials, none.note) == (None, "no credentials for quay.io in docker-credential-fake")
    assert (helpers / "asked.log").read_text().splitlines() == ["ghcr.io", DOCKER_HUB_KEY, "quay.io"]


def test_a_helper_named_for_the_registry_comes_before_the_store(helpers: Path) -> None:
    path = write_config(
        helpers,
        {
            "credsStore": "broken",
            "credHelpers": {"ghcr.io": "fake"},
            "auths": {"ghcr.io": {"auth": basic("file", "ignored")}},
        },
    )
    gh = lookup("ghcr.io/acme/web", path=path).credentials
    assert gh is not None
    assert gh.username == "gh"
    # The store itself fails: no credentials, and the note says what the helper said.
    other = lookup("reg.example/web", path=path)
    assert other.credentials is None
    said = "error getting credentials: the keyring is locked"
    assert other.note == f"no credentials: docker-credential-broken get failed: {said}"


def test_a_helper_that_is_not_installed_is_named(helpers: Path) -> None:
    path = write_config(helpers, {"credsStore": "desktop"})
    found = lookup("ghcr.io/acme/web", path=path)
    assert found.credentials is None
    assert (
        found.note
        == "no credentials: docker-credential-desktop get failed: docker-credential-desktop is not on PATH"
    )


def test_parse_config_reads_the_credential_settings() -> None:
    config = parse_config('{"auths": {"a": {}}, "credsStore": "pass", "credHelpers": {"gcr.io": "gcloud"}}')
    assert (dict(config.auths), config.creds_store, dict(config.cred_helpers)) == (
        {"a": {}},
        "pass",
        {"gcr.io": "gcloud"},
    )
