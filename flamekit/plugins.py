"""flamekit's plugin manager: finds plugins, records where each part came from, builds parts.

Plugins are discovered through the setuptools entry-point group ``flamekit`` (see
:mod:`flamekit.hookspecs` for the hooks and ``docs/PLUGINS.md`` for the guide). The entry
points are read here, not by pluggy's loader, so that every registered part knows the pip
distribution and version that provided it, and so that one broken plugin costs a
:class:`PluginLoadWarning` instead of the whole program.

Order and clashes: flamekit's own entry points load first, then third-party ones sorted by
distribution name and entry-point name; on a name clash within a kind the first registration
is kept, so a plugin can never silently replace a built-in.

Environment (read when the manager is built; :func:`reset_manager` re-reads it):

* ``FLAMEKIT_DISABLE_PLUGINS``: comma-separated entry-point (or distribution) names that are
  not loaded, built-in ones included; ``all`` blocks every third-party plugin.
* ``FLAMEKIT_PLUGINS``: comma-separated allowlist of third-party entry-point (or distribution)
  names; when set, other third-party plugins are not loaded. Built-ins always load unless
  ``FLAMEKIT_DISABLE_PLUGINS`` names them.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import inspect
import os
import re
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pluggy

from flamekit import hookspecs
from flamekit.plugin_types import PluginUnavailableError

__all__ = [
    "BUILTIN_DISTRIBUTION",
    "DISABLE_ENV",
    "ENTRY_POINT_GROUP",
    "KINDS",
    "PLUGINS_ENV",
    "DisabledPlugin",
    "PluginInfo",
    "PluginLoadWarning",
    "PluginManager",
    "PluginNameClashWarning",
    "PluginNotFoundError",
    "get_manager",
    "inpainter",
    "landmark_detector",
    "loss",
    "reset_manager",
    "segmenter",
]

ENTRY_POINT_GROUP = "flamekit"
BUILTIN_DISTRIBUTION = "flamekit"
PLUGINS_ENV = "FLAMEKIT_PLUGINS"
DISABLE_ENV = "FLAMEKIT_DISABLE_PLUGINS"

#: Plugin kinds and the hook that registers each.
KINDS: dict[str, str] = {
    "landmark-detector": "register_landmark_detectors",
    "segmenter": "register_segmenters",
    "inpainter": "register_inpainters",
    "loss": "register_losses",
    "renderer": "register_renderers",
}

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


class PluginLoadWarning(UserWarning):
    """A plugin could not be loaded or registered; it was skipped and the rest still work."""


class PluginNameClashWarning(PluginLoadWarning):
    """Two plugins registered the same name for one kind; the first registration was kept."""


class PluginNotFoundError(KeyError):
    """No plugin of that kind has that name; the message lists the names that exist."""

    def __init__(self, message: str, kind: str = "", name: str = "", known: Iterable[str] = ()):
        super().__init__(message)
        self.kind = kind
        self.name = name
        self.known = tuple(known)

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


def _normalize(name: str) -> str:
    """PEP 503 normalization, so 'Flamekit_Plugin' and 'flamekit-plugin' compare equal."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _availability_check(factory: Callable[..., Any]) -> Callable[[], Any] | None:
    """The callable that answers ``availability()`` for a factory, or None when it has none.

    A classmethod or staticmethod is called directly (cheap, the contract's way). An instance
    method means building the part first, which is accepted for backends written that way.
    """
    if isinstance(factory, type):
        raw = inspect.getattr_static(factory, "availability", None)
        if raw is None:
            return None
        if isinstance(raw, (classmethod, staticmethod)):
            return factory.availability
        if callable(raw):
            return lambda: factory().availability()
        return None
    check = getattr(factory, "availability", None)
    return check if callable(check) else None


@dataclass(frozen=True)
class PluginInfo:
    """One registered part: what it is, what builds it, and which distribution provided it.

    Attributes:
        kind: one of :data:`KINDS` (``"landmark-detector"``, ``"segmenter"``, ...).
        name: the name it is selected by, unique per kind.
        factory: the class or zero-argument callable that builds it (options as keywords).
        distribution: the pip distribution whose entry point registered it.
        version: that distribution's version.
        module: the module that defines the factory.
        entry_point: the entry-point name it was registered through.
    """

    kind: str
    name: str
    factory: Callable[..., Any]
    distribution: str
    version: str
    module: str
    entry_point: str = ""

    @property
    def builtin(self) -> bool:
        """True for flamekit's own plugins."""
        return _normalize(self.distribution) == BUILTIN_DISTRIBUTION

    def availability(self) -> tuple[bool, str]:
        """(usable here, reason and fix when not); never raises, even for a buggy plugin."""
        try:
            check = _availability_check(self.factory)
            if check is None:
                return True, ""
            usable, reason = check()
            return bool(usable), str(reason or "")
        except PluginUnavailableError as exc:
            return False, str(exc)
        except Exception as exc:  # a plugin's own bug must not break listing
            return False, f"availability check failed: {type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class DisabledPlugin:
    """An entry point that was not loaded because of the environment variables."""

    entry_point: str
    distribution: str
    version: str
    reason: str


@dataclass(frozen=True)
class _Source:
    entry_point: str
    distribution: str
    version: str


def _expected_base(kind: str) -> type:
    from flamekit.plugin_types import Inpainter, LandmarkDetector, Loss, Segmenter

    if kind == "renderer":
        from flamekit.render.backends import RasterBackend

        return RasterBackend
    return {
        "landmark-detector": LandmarkDetector,
        "segmenter": Segmenter,
        "inpainter": Inpainter,
        "loss": Loss,
    }[kind]


def _names_from_env(value: str | None) -> set[str]:
    if not value:
        return set()
    return {_normalize(part.strip()) for part in value.split(",") if part.strip()}


class PluginManager:
    """Loads the ``flamekit`` entry points and keeps every registered part by kind and name.

    Args:
        entry_points: the entry points to load (default: every installed one in the
            ``flamekit`` group). Each should carry its distribution (``ep.dist``).
        environ: where to read ``FLAMEKIT_PLUGINS`` / ``FLAMEKIT_DISABLE_PLUGINS``
            (default: ``os.environ``).

    Attributes:
        problems: the message of every :class:`PluginLoadWarning` emitted while loading.
        disabled: entry points skipped because of the environment variables.
    """

    def __init__(
        self,
        entry_points: Iterable[importlib.metadata.EntryPoint] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._parts: dict[str, dict[str, PluginInfo]] = {kind: {} for kind in KINDS}
        self._pushed_backends: list[tuple[str, Callable[..., Any]]] = []
        self._backends_installed = False
        self.problems: list[str] = []
        self.disabled: list[DisabledPlugin] = []
        env = os.environ if environ is None else environ
        self._allow = _names_from_env(env.get(PLUGINS_ENV))
        self._block = _names_from_env(env.get(DISABLE_ENV))
        discovered = entry_points is None
        if entry_points is None:
            entry_points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        self._load_entry_points(list(entry_points), check_builtins=discovered)

    # -- loading ---------------------------------------------------------------------------

    @property
    def pluggy_manager(self) -> pluggy.PluginManager:
        """The underlying pluggy manager (hook specifications and registered plugin objects)."""
        return self._pm

    def _warn(self, message: str, category: type[Warning] = PluginLoadWarning) -> None:
        self.problems.append(message)
        warnings.warn(message, category, stacklevel=4)

    @staticmethod
    def _source(ep: importlib.metadata.EntryPoint) -> _Source:
        dist = getattr(ep, "dist", None)
        if dist is None:
            return _Source(ep.name, "<unknown distribution>", "")
        name = getattr(dist, "name", None) or dist.metadata["Name"] or "<unknown distribution>"
        return _Source(ep.name, name, dist.version or "")

    def _disabled_reason(self, source: _Source, builtin: bool) -> str | None:
        keys = {_normalize(source.entry_point), _normalize(source.distribution)}
        if keys & self._block:
            return f"named in {DISABLE_ENV}"
        if builtin:
            return None
        if "all" in self._block:
            return f"{DISABLE_ENV}=all blocks third-party plugins"
        if self._allow and not keys & self._allow:
            return f"not listed in {PLUGINS_ENV}"
        return None

    def _load_entry_points(
        self, entry_points: list[importlib.metadata.EntryPoint], check_builtins: bool
    ) -> None:
        sourced = [(self._source(ep), ep) for ep in entry_points]

        def order(item: tuple[_Source, importlib.metadata.EntryPoint]) -> tuple:
            source = item[0]
            builtin = _normalize(source.distribution) == BUILTIN_DISTRIBUTION
            return (not builtin, _normalize(source.distribution), source.entry_point)

        sourced.sort(key=order)
        if check_builtins and not any(
            _normalize(s.distribution) == BUILTIN_DISTRIBUTION for s, _ in sourced
        ):
            self._warn(
                "flamekit's built-in plugins are not registered: the installed flamekit "
                f"metadata lists no '{ENTRY_POINT_GROUP}' entry points (an install older than "
                "the plugin system?); reinstall with `pip install -e . --no-build-isolation`"
            )
        for source, ep in sourced:
            builtin = _normalize(source.distribution) == BUILTIN_DISTRIBUTION
            reason = self._disabled_reason(source, builtin)
            if reason is not None:
                self.disabled.append(
                    DisabledPlugin(source.entry_point, source.distribution, source.version, reason)
                )
                continue
            try:
                plugin = ep.load()
            except (Exception, SystemExit) as exc:
                self._warn(
                    f"flamekit plugin entry point {ep.name!r} (= {ep.value!r}) of distribution "
                    f"{source.distribution} {source.version} failed to import and was skipped: "
                    f"{type(exc).__name__}: {exc}"
                )
                continue
            self._register_plugin(plugin, source)

    def _register_plugin(self, plugin: object, source: _Source) -> bool:
        label = (
            f"flamekit plugin entry point {source.entry_point!r} of distribution "
            f"{source.distribution} {source.version}".rstrip()
        )
        try:
            self._pm.register(plugin, name=f"{source.distribution}:{source.entry_point}")
        except Exception as exc:  # PluginValidationError, or the same object twice
            self._warn(f"{label} was skipped: {type(exc).__name__}: {exc}")
            return False
        callers = self._pm.get_hookcallers(plugin) or []
        if not callers:
            self._warn(
                f"{label} implements no flamekit hook (are its functions marked with "
                "@flamekit.hookimpl and named after a hook?)"
            )
        for caller in callers:
            if caller.spec is None:
                close = difflib.get_close_matches(caller.name, list(KINDS.values()), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self._warn(
                    f"{label} implements {caller.name!r}, which is not a flamekit hook{hint}; "
                    f"known hooks: {', '.join(KINDS.values())}"
                )
        for kind, hook_name in KINDS.items():
            for impl in getattr(self._pm.hook, hook_name).get_hookimpls():
                if impl.plugin is plugin:
                    self._run_registration_hook(impl, kind, source, label)
        return True

    def _run_registration_hook(
        self, impl: pluggy.HookImpl, kind: str, source: _Source, label: str
    ) -> None:
        hook_name = KINDS[kind]
        if impl.hookwrapper or impl.wrapper:
            self._warn(f"{label}: {hook_name} is a registration hook and cannot be a wrapper")
            return
        staged: list[tuple[str, Callable[..., Any]]] = []
        open_ = True

        def register(name: str, factory: Callable[..., Any]) -> None:
            if not open_:
                raise RuntimeError(f"register() of {hook_name} was called after the hook returned")
            if not isinstance(name, str) or not _NAME_RE.match(name):
                self._warn(
                    f"{label}: {hook_name} registered the invalid name {name!r} (names are "
                    "lower-case letters, digits and '-'); it was skipped"
                )
                return
            if not callable(factory):
                self._warn(
                    f"{label}: {hook_name} registered {name!r} with a factory that is not "
                    f"callable ({factory!r}); it was skipped"
                )
                return
            staged.append((name, factory))

        arguments = {"register": register}
        try:
            impl.function(*[arguments[arg] for arg in impl.argnames])
        except Exception as exc:
            self._warn(
                f"{label}: {hook_name} raised {type(exc).__name__}: {exc}; the parts it "
                "registered there were skipped"
            )
            return
        finally:
            open_ = False
        for name, factory in staged:
            self._add(
                PluginInfo(
                    kind=kind,
                    name=name,
                    factory=factory,
                    distribution=source.distribution,
                    version=source.version,
                    module=getattr(factory, "__module__", None) or "",
                    entry_point=source.entry_point,
                )
            )

    def _add(self, info: PluginInfo) -> None:
        existing = self._parts[info.kind].get(info.name)
        if existing is None:
            self._parts[info.kind][info.name] = info
            return
        self._warn(
            f"{info.kind} {info.name!r} from distribution {info.distribution} (entry point "
            f"{info.entry_point!r}) clashes with the one from distribution "
            f"{existing.distribution} (entry point {existing.entry_point!r}); keeping the "
            f"one from {existing.distribution}",
            PluginNameClashWarning,
        )

    def register_plugin(
        self,
        plugin: object,
        name: str,
        distribution: str = "<in-process>",
        version: str = "",
    ) -> bool:
        """Register a plugin object (module, class or instance with hookimpls) at run time.

        For notebooks and tests that define plugins without packaging them; the parts load
        after everything already registered, so existing names win a clash. Returns False
        (with a warning) when the object was rejected.
        """
        added = self._register_plugin(plugin, _Source(name, distribution, version))
        if added and self._backends_installed:
            self.install_backends()
        return added

    # -- renderer backends -----------------------------------------------------------------

    def install_backends(self) -> None:
        """Make every renderer plugin selectable by ``Renderer(backend=name)``."""
        from flamekit.render import backends

        self._backends_installed = True
        for info in self._parts["renderer"].values():
            current = backends._REGISTRY.get(info.name)
            if current is info.factory:
                continue
            try:
                backends.register_backend(info.name, info.factory)
            except ValueError as exc:
                self._warn(
                    f"renderer {info.name!r} from distribution {info.distribution} was not "
                    f"installed as a renderer backend: {exc}",
                    PluginNameClashWarning,
                )
                continue
            self._pushed_backends.append((info.name, info.factory))

    def uninstall_backends(self) -> None:
        """Remove the backends :meth:`install_backends` added (for :func:`reset_manager`)."""
        from flamekit.render import backends

        for name, factory in self._pushed_backends:
            backends._unregister_backend(name, factory)
        self._pushed_backends.clear()
        self._backends_installed = False

    # -- queries ---------------------------------------------------------------------------

    @staticmethod
    def _check_kind(kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown plugin kind {kind!r}; kinds: {', '.join(KINDS)}")

    def list(self, kind: str | None = None) -> list[PluginInfo]:
        """Registered parts, by kind (in :data:`KINDS` order) then name."""
        if kind is not None:
            self._check_kind(kind)
        kinds = [kind] if kind is not None else list(KINDS)
        return [info for k in kinds for _, info in sorted(self._parts[k].items())]

    def names(self, kind: str) -> list[str]:
        """The registered names of one kind, sorted."""
        self._check_kind(kind)
        return sorted(self._parts[kind])

    def get(self, kind: str, name: str) -> PluginInfo:
        """The part registered as ``name``; PluginNotFoundError lists the known names."""
        self._check_kind(kind)
        info = self._parts[kind].get(name)
        if info is not None:
            return info
        known = self.names(kind)
        message = f"no {kind} plugin named {name!r}; " + (
            f"known: {', '.join(known)}" if known else f"no {kind} plugin is registered"
        )
        elsewhere = [k for k in KINDS if k != kind and name in self._parts[k]]
        if elsewhere:
            message += f" ({name!r} is a {' and a '.join(elsewhere)})"
        if self.disabled:
            blocked = ", ".join(d.entry_point for d in self.disabled)
            message += f"; entry points disabled by the environment: {blocked}"
        raise PluginNotFoundError(message, kind, name, known)

    def create(self, kind: str, name: str, **options: Any) -> Any:
        """Build the part ``name`` of ``kind`` with ``options``.

        Raises:
            PluginNotFoundError: no such name (the message lists the known ones).
            PluginUnavailableError: the part cannot run here (the message says why).
            TypeError: the factory rejected the options, or built the wrong kind of object.
        """
        info = self.get(kind, name)
        usable, reason = info.availability()
        # availability() judges the default setup; options (a weights path, say) may fix what
        # it reports, so with options the factory has the last word and raises its own error.
        if not usable and not options:
            raise PluginUnavailableError(
                f"{kind} {name!r} (from {info.distribution}) is unavailable here: {reason}"
            )
        instance = info.factory(**options)
        base = _expected_base(kind)
        if not isinstance(instance, base):
            raise TypeError(
                f"{kind} {name!r} from {info.distribution} returned "
                f"{type(instance).__name__!r}, which is not a {base.__module__}.{base.__name__}"
            )
        if not getattr(instance, "name", ""):
            try:
                instance.name = name
            except (AttributeError, TypeError):
                pass
        return instance


_lock = threading.RLock()
_manager: PluginManager | None = None
_building = False


def get_manager() -> PluginManager:
    """The process-wide manager, built on first use; its renderers are installed as backends."""
    global _manager, _building
    with _lock:
        if _manager is None:
            if _building:
                raise RuntimeError(
                    "flamekit plugins are still loading: a plugin must not use the plugin "
                    "manager while it is being imported or registered"
                )
            _building = True
            try:
                manager = PluginManager()
                manager.install_backends()
                _manager = manager
            finally:
                _building = False
        return _manager


def _load_for_backends() -> None:
    """Let renderer plugins register before a backend lookup; a no-op while loading."""
    with _lock:
        if _manager is None and not _building:
            get_manager()


def reset_manager() -> None:
    """Forget the process-wide manager (and the backends it installed); the next use reloads."""
    global _manager
    with _lock:
        if _manager is not None:
            _manager.uninstall_backends()
        _manager = None


def landmark_detector(name: str = "dlib", **options: Any):
    """Build the landmark detector ``name`` (see :meth:`PluginManager.create`)."""
    return get_manager().create("landmark-detector", name, **options)


def segmenter(name: str = "skin", **options: Any):
    """Build the skin segmenter ``name`` (see :meth:`PluginManager.create`)."""
    return get_manager().create("segmenter", name, **options)


def inpainter(name: str, **options: Any):
    """Build the inpainter ``name`` (see :meth:`PluginManager.create`)."""
    return get_manager().create("inpainter", name, **options)


def loss(name: str, **options: Any):
    """Build the fitting loss ``name`` (see :meth:`PluginManager.create`)."""
    return get_manager().create("loss", name, **options)
