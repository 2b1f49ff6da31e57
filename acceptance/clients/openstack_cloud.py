"""The one way the suite reaches OpenStack (snapshot, discovery, remediation): which clouds.yaml cloud
(:func:`select_cloud`), and openstacksdk on a keystoneauth Session over the suite's bounded requests session
(:func:`connect`). keystoneauth follows redirects itself (30, a POST re-posted with its body: a 307 on
``POST /v3/auth/tokens`` would send the password wherever Keystone points); here it follows none
(``redirect=False``) and a redirect status is an error raised before anything is sent there."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import requests

from acceptance.clients import transport
from acceptance.clients.call import bounded_all
from acceptance.clients.config import ApiConfig
from acceptance.clients.errors import ApiError, _find, classify, one_line, where
from acceptance.inventory import Inventory
from acceptance.redaction import remember_mapping

PHYSICAL_PROJECT = "ALICE Release Testing - physical nodes"
INSECURE_VAR = "ALICE_ACCEPTANCE_OPENSTACK_INSECURE"
# keystoneauth's redirect statuses; 300 is not one: Keystone lists its versions with it, an answer to read
REDIRECTS = frozenset({301, 302, 303, 305, 307, 308})
Side = Literal["vm", "metal"]  # vm: masters and VM agents; metal: bare-metal agents
T = TypeVar("T")


@dataclass(frozen=True)
class Cloud:
    name: str
    project: str | None  # a project_name override of the cloud's
    source: str  # the setting that chose it, for messages
    region: Any  # openstacksdk's CloudRegion

    @property
    def label(self) -> str:
        return f"{self.source} (cloud {self.name!r})"


def _choose(inventory: Inventory, side: Side, remediation: bool, project: str | None,
            env: Mapping[str, str]) -> tuple[str | None, str | None, str]:
    """(cloud, project override, source). Remediation acts with clouds of its own (a member's credentials),
    else the checks' ones; the physical nodes' project is a cloud of its own, else the VMs' cloud scoped to it."""
    def setting(key: str) -> tuple[str | None, str]:
        value = getattr(inventory.apis.openstack, key, None)  # None when there is no apis.openstack
        return (value if isinstance(value, str) else None), f"apis.openstack.{key}"

    picks = [setting("cloud"), (env.get("OS_CLOUD"), "OS_CLOUD")]
    if remediation:
        picks[:0] = [setting("remediation_cloud"), (env.get("OS_REMEDIATION_CLOUD"), "OS_REMEDIATION_CLOUD")]
    if side == "metal":
        metal = [setting("remediation_cloud_metal")] if remediation else []
        metal.append(setting("cloud_metal"))
        own = next(((c, src) for c, src in metal if c), None)
        if own:
            return own[0], None, own[1]
        project = (project or next((r.project for r in inventory.discovery if r.role == "agent" and r.kind == "metal"),
                                   None)
                   or next((n.project for n in inventory.nodes if n.kind == "metal" and n.project), None)
                   or PHYSICAL_PROJECT)
    cloud, source = next(((c, src) for c, src in picks if c), (None, "OS_CLOUD"))
    return cloud, project, f"{source} with project {project!r}" if project else source


def select_cloud(inventory: Inventory, side: Side = "vm", *, remediation: bool = False, project: str | None = None,
                 timeout_s: float | None = None, env: Mapping[str, str] | None = None) -> Cloud:
    """The clouds.yaml cloud of one side, its calls bounded (no retries), its secrets remembered for redaction;
    a ``config`` ApiError when none is set or found, or when it turns TLS verification off (unless
    ALICE_ACCEPTANCE_OPENSTACK_INSECURE=1)."""
    import openstack.config  # slow to import, and only needed with OpenStack

    env = os.environ if env is None else env
    name, project, source = _choose(inventory, side, remediation, project, env)
    if name is None:
        raise ApiError("config", "OpenStack is not configured; fix: set OS_CLOUD (and OS_CLIENT_CONFIG_FILE) or "
                                 f"apis.openstack.cloud in {inventory.path}")
    settings = inventory.apis.openstack
    files = [str(settings.clouds_yaml)] if settings and settings.clouds_yaml else None
    timeout = timeout_s if timeout_s is not None else float(settings.timeout_s if settings else 30)
    extra: dict[str, Any] = {"project_name": project} if project else {}
    try:
        region = openstack.config.OpenStackConfig(config_files=files).get_one(
            cloud=name, api_timeout=timeout, connect_retries=0, status_code_retries=0, **extra)
    except Exception as e:  # openstacksdk raises its own types for a missing cloud or file
        raise ApiError("config", f"OpenStack: cloud {name!r}: {type(e).__name__}: {one_line(e, 160)}; fix: set "
                                 "OS_CLOUD or apis.openstack.cloud to a cloud of clouds.yaml (OS_CLIENT_CONFIG_FILE "
                                 "or apis.openstack.clouds_yaml)") from None
    remember_mapping(region.config)
    verify, _ = region.get_requests_verify_args()
    if verify is False and env.get(INSECURE_VAR, "").strip().lower() not in ("1", "true", "yes"):
        raise ApiError("config", f"OpenStack: cloud {name!r} in clouds.yaml turns TLS verification off (verify: "
                                 "false / insecure: true), which would send its password unchecked; fix: give it "
                                 f"cacert: <the CA file> (or set {INSECURE_VAR}=1 to allow it knowingly)")
    return Cloud(name, project, source, region)


class Redirected(transport.Redirected):
    def __init__(self, what: str, status: int, location: str) -> None:
        super().__init__(status, location)
        self.what = what
        pointed = f"to {transport.excerpt(location, 160)}" if location else "(no Location)"
        self.args = (f"{what} answered {status}, a redirect {pointed}; not followed (the credentials would go "
                     "with it)",)


def _refuse_redirect(response: requests.Response, *args: Any, **kwargs: Any) -> None:
    """A response hook: it runs before keystoneauth sees the answer (``json_api`` would refuse Keystone's 300)."""
    if response.status_code in REDIRECTS:
        what = f"{response.request.method} {response.request.path_url}"
        raise Redirected(what, response.status_code, response.headers.get("Location", ""))


class OffOrigin(Redirected):
    """A full URL (a ``next`` link, a version document's link) pointing away from Keystone and its catalog."""

    def __init__(self, what: str, url: str) -> None:
        super().__init__(what, 0, url)
        self.args = (f"{what}: a link to {transport.excerpt(url, 160)}, neither Keystone's nor its catalog's; not "
                     "followed (the token would go with it)",)


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower() + f":{parts.port or ''}"


def _pinned(base: Any) -> Any:
    """keystoneauth's Session, sending a full URL only to Keystone's origin or one of its catalog's: a server
    that answers with a link elsewhere (Nova's paging ``next``) does not get the token sent there."""

    class Pinned(base):  # type: ignore[misc]
        def request(self, url: str, method: str, **kw: Any) -> Any:
            if urlsplit(url).scheme:
                origins = {_origin(getattr(self.auth, "auth_url", "") or "")}
                if kw.get("authenticated") is not False or getattr(self.auth, "auth_ref", None) is not None:
                    catalog = self.auth.get_access(self).service_catalog.catalog or []
                    origins |= {_origin(str(e.get("url", ""))) for s in catalog for e in s.get("endpoints", [])}
                if _origin(url) not in origins:
                    raise OffOrigin(f"{method} {urlsplit(url).path}", url)
            return super().request(url, method, **kw)

    return Pinned


def connect(cloud: Cloud) -> Any:
    """openstacksdk's Connection on the bounded session; call it inside :func:`transport.deadline`."""
    import keystoneauth1.session
    import openstack.connection

    session_class = _pinned(keystoneauth1.session.Session)

    def hardened(*, auth: Any, verify: Any, cert: Any, timeout: Any, **kw: Any) -> keystoneauth1.session.Session:
        http = transport.new_session(verify=verify, cert=cert, max_body=transport.MAX_BODY, api="openstack")
        http.hooks["response"].append(_refuse_redirect)
        return session_class(auth=auth, session=http, verify=verify, cert=cert, timeout=timeout,  # type: ignore[no-any-return]
                             redirect=False, connect_retries=0, **kw)

    cloud.region.set_session_constructor(hardened)  # openstacksdk's CloudRegion builds the session with it
    return openstack.connection.Connection(config=cloud.region)


def unwrap(exc: BaseException) -> BaseException:
    """The suite's own error under keystoneauth's wrapping (``UnknownConnectionError(message, error)``)."""
    return _find(exc, (transport.Redirected, transport.Aborted, transport.TooLarge)) or exc


def api_error(cfg: ApiConfig, path: str, exc: BaseException, timeout_s: float | None = None) -> ApiError:
    inner = unwrap(exc)
    if isinstance(inner, Redirected):
        return ApiError("redirect", f"{where(cfg, cfg.url)}: {inner} — set auth_url in clouds.yaml (and Keystone's "
                                    "catalog) to the servers themselves", status=inner.status)
    if isinstance(inner, transport.Aborted):  # Keystone's or Nova's answer: keystoneauth does not say which
        within = f"within {inner.seconds:.2g} s" if inner.seconds else "before the deadline"
        return ApiError("unreachable", f"{where(cfg, cfg.url)} did not finish answering {within} (apis.deadline_s, "
                                       "apis.openstack.timeout_s)", retryable=True)
    return classify(cfg, cfg.url, path, inner, timeout_s)


def late(label: str, seconds: float) -> ApiError:
    return ApiError("unreachable", f"OpenStack ({label}) did not answer within the deadline of {seconds:g} s "
                                   "(apis.deadline_s)")


def quietly(fn: Callable[[], T]) -> Callable[[], T]:
    """``fn`` with warnings ignored: openstacksdk's deprecation notices are not the operator's business."""
    def run() -> T:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn()
    return run


def bounded(seconds: float, label: str, fn: Callable[[], T]) -> T:
    """:func:`bounded_all` of one call, :func:`quietly`: its value, else its exception raised, else :func:`late`."""
    value = bounded_all(seconds, {"call": quietly(fn)}).get("call", late(label, seconds))
    if isinstance(value, Exception):
        raise value
    return value
