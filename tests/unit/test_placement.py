"""The spread of an app's replicas over its Docker hosts (placement.py)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.factories import make_app
from trafficshift.placement import host_of, replicas_on, spread


def test_replica_n_runs_on_host_n_minus_1_mod_the_hosts_in_the_apps_order() -> None:
    app = make_app(replicas=5, hosts=("b", "a"))
    assert [host_of(n, app.hosts) for n in range(1, 6)] == ["b", "a", "b", "a", "b"]
    assert spread(app) == {"b": (1, 3, 5), "a": (2, 4)}
    assert replicas_on(app, "a") == (2, 4)


def test_a_host_the_app_is_not_on_runs_none_of_it_and_more_hosts_than_replicas_leaves_some_idle() -> None:
    app = make_app(replicas=1, hosts=("a", "b"))
    assert spread(app) == {"a": (1,), "b": ()}
    assert replicas_on(app, "c") == ()


def test_no_host_for_an_app_without_hosts() -> None:
    with pytest.raises(ValueError, match="no host for replica 1"):
        host_of(1, ())


@given(replicas=st.integers(1, 100), hosts=st.integers(1, 8))
def test_every_replica_on_exactly_one_host_and_counts_differ_by_one_at_most(
    replicas: int, hosts: int
) -> None:
    names = tuple(f"h{i}" for i in range(hosts))
    app = make_app(replicas=replicas, hosts=names)
    placed = spread(app)
    assert sorted(n for numbers in placed.values() for n in numbers) == list(range(1, replicas + 1))
    counts = Counter({host: len(numbers) for host, numbers in placed.items()})
    assert max(counts.values()) - min(counts.values()) <= 1


@given(replicas=st.integers(1, 50), hosts=st.integers(1, 8))
def test_adding_a_replica_moves_none_of_the_others(replicas: int, hosts: int) -> None:
    names = tuple(f"h{i}" for i in range(hosts))
    before = make_app(replicas=replicas, hosts=names)
    after = make_app(replicas=replicas + 1, hosts=names)
    assert all(host_of(n, before.hosts) == host_of(n, after.hosts) for n in range(1, replicas + 1))
