"""The root checks of the cluster APIs, ``api.<name>.reachable``, one per API of the registry
(acceptance.apiregistry.APIS): ``failed`` when the API does not answer, ``error`` when the suite cannot use
it (configuration, TLS, a token refused everywhere). Every check of that API is blocked by it."""

from __future__ import annotations

from collections.abc import Callable

from acceptance.apifixtures import assert_reachable
from acceptance.apiregistry import APIS, ApiSpec, Snapshots
from acceptance.checkspec import check
from acceptance.inventory import CLUSTER


def _reachable(spec: ApiSpec) -> Callable[[Snapshots], None]:
    def test(snapshots: Snapshots) -> None:
        assert_reachable(snapshots.get(spec.name))

    test.__name__ = test.__qualname__ = f"test_{spec.name}_reachable"
    test.__doc__ = f"{spec.title} answers and the suite may use it."
    return check(spec.root_check, runbook=spec.runbook, severity=spec.severity, roles=[CLUSTER], needs=())(test)


for _spec in APIS:
    globals()[f"test_{_spec.name}_reachable"] = _reachable(_spec)
