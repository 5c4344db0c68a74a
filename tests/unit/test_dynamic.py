"""write_dynamic: Traefik only ever sees a whole file, and only changes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import trafficshift.traefik.files as dynamic
from trafficshift.traefik.files import STAGING_DIR_NAME, dynamic_path, write_dynamic

DOC_A = "http:\n  services:\n    a: {weighted: {services: [{name: a-blue, weight: 100}]}}\n"


def all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_path_is_one_file_per_app(tmp_path: Path) -> None:
    assert dynamic_path(dynamic_dir=tmp_path, app="web") == tmp_path / "web.yml"


def test_write_creates_folder_and_file(tmp_path: Path) -> None:
    watched = tmp_path / "traefik" / "dynamic"
    assert write_dynamic(dynamic_dir=watched, app="web", text=DOC_A) is True
    path = watched / "web.yml"
    assert path.read_text() == DOC_A
    assert path.stat().st_mode & 0o777 == 0o644
    assert os.listdir(watched) == ["web.yml"]


def test_unchanged_text_is_not_written(tmp_path: Path) -> None:
    tmp_path /= "dynamic"
    write_dynamic(dynamic_dir=tmp_path, app="web", text=DOC_A)
    before = (tmp_path / "web.yml").stat()
    assert write_dynamic(dynamic_dir=tmp_path, app="web", text=DOC_A) is False
    after = (tmp_path / "web.yml").stat()
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)
    assert write_dynamic(dynamic_dir=tmp_path, app="web", text=DOC_A + "# changed\n") is True
    assert (tmp_path / "web.yml").stat().st_ino != before.st_ino  # replaced, not rewritten in place


def test_none_removes(tmp_path: Path) -> None:
    tmp_path /= "dynamic"
    write_dynamic(dynamic_dir=tmp_path, app="web", text=DOC_A)
    assert write_dynamic(dynamic_dir=tmp_path, app="web", text=None) is True
    assert not (tmp_path / "web.yml").exists()
    assert write_dynamic(dynamic_dir=tmp_path, app="web", text=None) is False
    assert write_dynamic(dynamic_dir=tmp_path / "never", app="web", text=None) is False


def test_staging_is_outside_the_watched_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    watched = tmp_path / "dynamic"
    seen: list[Path] = []
    real_replace = os.replace

    def spy(src: str | Path, dst: str | Path) -> None:
        seen.append(Path(src))
        real_replace(src, dst)

    monkeypatch.setattr(dynamic.os, "replace", spy)
    write_dynamic(dynamic_dir=watched, app="web", text=DOC_A)
    assert [p.parent for p in seen] == [tmp_path / STAGING_DIR_NAME]
    assert seen[0].name.startswith(".web.")
    assert all_files(tmp_path) == [watched / "web.yml"]


def test_other_device_stages_inside_under_a_name_traefik_ignores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    watched = tmp_path / "dynamic"
    watched.mkdir()
    real_stat = Path.stat

    def fake_stat(self: Path, **kw: bool) -> os.stat_result:
        result = real_stat(self, **kw)
        if self.name == STAGING_DIR_NAME:
            fields = list(result)
            fields[2] = result.st_dev + 1  # st_dev
            return os.stat_result(fields)
        return result

    seen: list[Path] = []
    real_replace = os.replace
    monkeypatch.setattr(Path, "stat", fake_stat)
    monkeypatch.setattr(dynamic.os, "replace", lambda s, d: (seen.append(Path(s)), real_replace(s, d)))
    write_dynamic(dynamic_dir=watched, app="web", text=DOC_A)
    assert seen[0].parent == watched
    assert seen[0].name.startswith(".")
    assert seen[0].suffix == ".tmp"
    assert os.listdir(watched) == ["web.yml"]


def test_failure_leaves_no_temp_file_and_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_dynamic(dynamic_dir=tmp_path / "d", app="web", text=DOC_A)

    def broken(src: str | Path, dst: str | Path) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(dynamic.os, "replace", broken)
    with pytest.raises(OSError, match="disk on fire"):
        write_dynamic(dynamic_dir=tmp_path / "d", app="web", text="other: 1\n")
    assert all_files(tmp_path) == [tmp_path / "d" / "web.yml"]
    assert (tmp_path / "d" / "web.yml").read_text() == DOC_A


# Runs in its own process, like Traefik: a thread would fight the writer for the GIL and slow it down 20x.
READER = """
import pathlib, sys, yaml
path, stop, ready = map(pathlib.Path, sys.argv[1:4])
contents = [pathlib.Path(p).read_text() for p in sys.argv[4:]]
parsed = [yaml.safe_load(c) for c in contents]
reads, bad = 0, []
while not stop.exists():
    text = path.read_text()
    if text not in contents or yaml.safe_load(text) not in parsed:
        bad.append(text[:80])
    reads += 1
    if reads == 1:
        ready.touch()
print(reads, len(bad), repr(bad[:3]))
"""


def test_reader_never_sees_a_partial_file(tmp_path: Path) -> None:
    # Two contents of clearly different sizes, so a torn read cannot pass for either.
    contents = [DOC_A, DOC_A + "# padding\n" * 300 + "x: [1, 2, 3]\n"]
    samples = []
    for i, text in enumerate(contents):
        samples.append(tmp_path / f"sample{i}")
        samples[-1].write_text(text)
    watched = tmp_path / "dynamic"
    write_dynamic(dynamic_dir=watched, app="web", text=contents[0])
    path = watched / "web.yml"
    stop, ready = tmp_path / "stop", tmp_path / "ready"
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(path), str(stop), str(ready), *map(str, samples)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not ready.exists():
            assert reader.poll() is None, "reader died"
            assert time.monotonic() < deadline, "reader did not start"
            time.sleep(0.01)
        for i in range(1000):
            assert write_dynamic(dynamic_dir=watched, app="web", text=contents[(i + 1) % 2]) is True
    finally:
        stop.touch()
        out, _ = reader.communicate(timeout=10)
    reads, bad, examples = out.split(maxsplit=2)
    assert int(bad) == 0, examples
    assert int(reads) > 100
    assert all_files(watched.parent / STAGING_DIR_NAME) == []
    assert os.listdir(watched) == ["web.yml"]


def test_a_temp_file_left_by_a_killed_writer_is_removed_by_the_next_write(tmp_path: Path) -> None:
    dynamic_dir = tmp_path / "dynamic"
    write_dynamic(dynamic_dir=dynamic_dir, app="web", text="a: 1\n")
    staging = tmp_path / STAGING_DIR_NAME
    leftover = staging / ".web.abc123.tmp"
    leftover.write_text("half a fi")
    other_app = staging / ".web-2.abc123.tmp"  # another app's writer may be at work: not ours to touch
    other_app.write_text("b: 2\n")
    write_dynamic(dynamic_dir=dynamic_dir, app="web", text="a: 2\n")
    assert not leftover.exists()
    assert other_app.exists()
    assert sorted(p.name for p in staging.iterdir()) == [".web-2.abc123.tmp"]
