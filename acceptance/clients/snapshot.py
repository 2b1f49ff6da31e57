"""Typed snapshots: what one API said in one run, part by part, parsed and shape-checked. A :class:`Part` holds
its value or the :class:`ApiError` that explains why it is missing; reading it (``snap.nodes``) gives the value
or raises :class:`CheckError` (outcome ``error``), so a check can never pass on a part that was not read.
(acceptance/apiregistry.py fetches every API's once per process.)"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, Generic, TypeVar, overload

from acceptance.clients.errors import ApiError
from acceptance.outcomes import CheckError, judge

T = TypeVar("T")
S = TypeVar("S", bound="ApiSnapshot")
_MISSING: Any = object()


def attempt(fn: Callable[[], T]) -> T | ApiError:
    try:
        return fn()
    except ApiError as e:
        return e


class Part(Generic[T]):
    name: str

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type) -> Part[T]: ...

    @overload
    def __get__(self, obj: ApiSnapshot, owner: type) -> T: ...

    def __get__(self, obj: ApiSnapshot | None, owner: type) -> T | Part[T]:
        if obj is None:
            return self
        value: T = obj.need_part(self.name)
        return value

    def __set__(self, obj: ApiSnapshot, value: T | ApiError) -> None:
        obj.set_part(self.name, value)


class PerNode(Generic[T]):
    """One value per node (by name), or the error of that node's answer."""

    def __init__(self, api: str, values: Mapping[str, T | ApiError] | None = None,
                 urls: Mapping[str, str] | None = None) -> None:
        self.api = api
        self.values: dict[str, T | ApiError] = dict(values or {})
        self.urls: dict[str, str] = dict(urls or {})
        self.accessed: set[str] = set()

    def error_of(self, name: str) -> ApiError | None:
        value = self.values.get(name)
        return value if isinstance(value, ApiError) else None

    def of(self, name: str) -> T:
        """The node's value; no answer from it is ``failed`` (a verdict on the node), any other reason ``error``."""
        self.accessed.add(name)
        value = self.values.get(name, _MISSING)
        if value is _MISSING:
            raise CheckError(f"{self.api}: nothing fetched for {name}")
        if isinstance(value, ApiError):
            judge(value.unreachable, str(value))
        return value  # type: ignore[no-any-return]

    def url_of(self, name: str) -> str:
        return self.urls.get(name, "?")

    def answered(self) -> dict[str, T]:
        return {k: v for k, v in self.values.items() if not isinstance(v, ApiError)}

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)


class ApiSnapshot:
    """What one API said: its parts, the address that answered, and ``root``: set when the API as a whole could
    not be used (the root check ``api.<name>.reachable`` reports it; its checks are blocked)."""

    api: ClassVar[str] = ""

    def __init__(self, *, url: str = "", root: ApiError | None = None) -> None:
        self.url, self.root, self.duration_s = url, root, 0.0
        self._parts: dict[str, Any] = {}
        self.accessed: set[str] = set()

    @classmethod
    def part_names(cls) -> list[str]:
        return [name for klass in reversed(cls.__mro__) for name, value in vars(klass).items()
                if isinstance(value, Part)]

    def set_part(self, name: str, value: object) -> None:
        self._parts[name] = value

    def need_part(self, name: str) -> Any:
        self.accessed.add(name)
        value = self._parts.get(name, _MISSING)
        if value is _MISSING:
            raise CheckError(f"{self.api}: nothing fetched for {name!r}")
        if isinstance(value, ApiError):
            raise CheckError(str(value))
        return value

    def error_of(self, name: str) -> ApiError | None:
        value = self._parts.get(name)
        return value if isinstance(value, ApiError) else None

    def raw(self, name: str) -> Any:
        return self._parts.get(name)

    def errors(self) -> dict[str, ApiError]:
        return {k: v for k, v in self._parts.items() if isinstance(v, ApiError)}

    def fetched(self) -> dict[str, Any]:
        return {k: v for k, v in self._parts.items() if not isinstance(v, ApiError)}

    def decide_root(self, token_parts: tuple[str, ...] = (), probe: str | None = None) -> None:
        """Unusable when a part failed in a way no check gets past (configuration, TLS, no answer), when every
        part failed, when ``probe`` (answered without a token) answered what is not the API's, or when every
        part that needs the token was refused it."""
        if self.root is not None:
            return
        first = self.error_of(probe) if probe else None
        if first is not None and first.kind in ("protocol", "redirect"):
            self.root = first
            return
        errors = self.errors()
        for name, value in self._parts.items():  # a part of one answer per node fails when every node's does
            failed = [v for v in value.values.values() if isinstance(v, ApiError)] if isinstance(value, PerNode) \
                else []
            if failed and len(failed) == len(value.values):
                errors[name] = next((e for e in failed if not e.unreachable), failed[0])
        self.root = next((e for e in errors.values() if e.kind in ("config", "tls", "client-cert", "unreachable")),
                         None)
        names = [n for n in self.part_names() if n in self._parts]
        leaderless = any(e.kind == "no-leader" for e in errors.values())  # it answers: its checks say so
        if self.root is None and names and all(n in errors for n in names) and not leaderless:
            self.root = next((errors[n] for n in names if errors[n].kind != "deadline"), errors[names[0]])
        refused = [errors[n] for n in token_parts if n in errors and errors[n].kind in ("auth", "forbidden")]
        auth = [e for e in refused if e.kind == "auth"]
        if self.root is None and auth and len(refused) == len([n for n in token_parts if n in self._parts]):
            self.root = auth[0]

    @classmethod
    def unusable(cls: type[S], err: ApiError) -> S:
        return cls(root=err)
