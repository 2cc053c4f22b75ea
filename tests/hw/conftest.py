"""Fixtures for the hardware tests: fabrics on unique cluster names, always destroyed.

``make_fabric`` (per test) and ``make_module_fabric`` (per module, for hypothesis tests
that must not rebuild the fabric for every example) create a :class:`Fabric` on a fresh
cluster name; at teardown every fabric is destroyed and no ``smartio.<cluster>.*`` object
may remain in the shared-memory directory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from uuid import uuid4

import pytest

from smartio.hw.fabric import Fabric
from smartio.hw.memory import SHM_DIR
from smartio.hw.topology import TopologySpec

MakeFabric = Callable[[TopologySpec], Fabric]


def _fabrics() -> tuple[MakeFabric, list[Fabric]]:
    made: list[Fabric] = []

    def make(topo: TopologySpec) -> Fabric:
        fab = Fabric.create(topo, f"t-{uuid4().hex[:8]}")
        made.append(fab)
        return fab

    return make, made


def _destroy(made: list[Fabric]) -> None:
    for fab in reversed(made):
        fab.destroy()
    left = [p.name for fab in made for p in SHM_DIR.glob(f"smartio.{fab.cluster}.*")]
    assert not left, f"shared-memory objects left after destroy: {left}"


@pytest.fixture
def make_fabric() -> Iterator[MakeFabric]:
    """Create fabrics for one test; destroyed (and checked for leftovers) after it."""
    make, made = _fabrics()
    yield make
    _destroy(made)


@pytest.fixture(scope="module")
def make_module_fabric() -> Iterator[MakeFabric]:
    """Create fabrics shared by one test module; destroyed after its last test."""
    make, made = _fabrics()
    yield make
    _destroy(made)
