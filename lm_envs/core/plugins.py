"""Environments from other packages: ``--import MODULE``, the ``lm_envs.envs`` entry-point group, ``module:Id`` ids.

A package that registers envs (:func:`lm_envs.register` at import) reaches every ``lm-envs`` command
in one of three ways:

- ``lm-envs --import mypkg <command> ...`` (any command; repeatable) imports it first. The modules are
  also put in ``$LM_ENVS_IMPORT`` (comma-separated), so the processes a command starts (torchrun
  ranks, Hydra launcher jobs) import them too; setting that variable yourself works the same way.
- An installed package declares an entry point in the group ``lm_envs.envs`` and needs nothing::

      [project.entry-points."lm_envs.envs"]
      mypkg = "mypkg"            # a module to import, or "mypkg.envs:register_all" (a function to call)

- Gymnasium's ``module:Id`` form (``env.id=mypkg:MyOrg/Task-v0``) imports ``module``; runs record
  the plain ``Id`` (:func:`split_env_id`), so results and the leaderboard know it by its name.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable

#: The entry-point group that ``lm-envs`` loads before every command.
ENTRY_POINT_GROUP = "lm_envs.envs"
#: Comma-separated modules to import first (what ``--import`` sets for child processes).
IMPORT_ENV = "LM_ENVS_IMPORT"

_loaded: set[str] = set()


def import_env_modules(modules: Iterable[str]) -> list[str]:
    """Import ``modules`` (each registers envs at import); returns them.

    Raises:
        ImportError: Naming the module that cannot be imported and the fix.
    """
    done = []
    for module in modules:
        module = module.strip()
        if not module:
            continue
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ImportError(
                f"cannot import {module!r} (from --import or ${IMPORT_ENV}): {err}; install the package or put its "
                "directory on PYTHONPATH."
            ) from err
        done.append(module)
    return done


def load_entry_points() -> list[str]:
    """Load every ``lm_envs.envs`` entry point of the installed packages (once per process); their names.

    An entry point names a module (imported) or a callable (imported, then called without arguments).

    Raises:
        ImportError: Naming the entry point and its package when it fails to load.
    """
    from importlib.metadata import entry_points

    names = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        key = f"{ep.name}={ep.value}"
        if key in _loaded:
            continue
        try:
            obj = ep.load()
        except Exception as err:
            dist = getattr(getattr(ep, "dist", None), "name", "?")
            raise ImportError(
                f"the {ENTRY_POINT_GROUP} entry point {key!r} of package {dist!r} failed to load: {err}; fix or "
                "uninstall that package."
            ) from err
        if callable(obj) and ":" in ep.value:
            obj()
        _loaded.add(key)
        names.append(ep.name)
    return names


def load_plugins(modules: Iterable[str] = (), export: bool = False) -> list[str]:
    """Register third-party envs: ``modules``, then those in ``$LM_ENVS_IMPORT``, then the entry points.

    Args:
        modules: Modules to import (``--import``).
        export: Also add ``modules`` to ``$LM_ENVS_IMPORT`` so processes started from here import them.

    Returns:
        The modules imported and entry points loaded.
    """
    modules = [m for m in modules if m.strip()]
    listed = [m for m in os.environ.get(IMPORT_ENV, "").split(",") if m.strip()]
    done = import_env_modules(dict.fromkeys([*modules, *listed]))
    if export and modules:  # only once they imported: a bad name must not reach later processes
        os.environ[IMPORT_ENV] = ",".join(dict.fromkeys([*listed, *modules]))
    return [*done, *load_entry_points()]


def split_env_id(env_id: str) -> tuple[str | None, str]:
    """``"mypkg.envs:MyOrg/Task-v0"`` -> ``("mypkg.envs", "MyOrg/Task-v0")``; a plain id has no module.

    Example:
        >>> split_env_id("mypkg:MyOrg/Task-v0"), split_env_id("LMEnv/Math-v0")
        (('mypkg', 'MyOrg/Task-v0'), (None, 'LMEnv/Math-v0'))
    """
    module, sep, name = env_id.partition(":")
    return (module, name) if sep else (None, env_id)


def resolve_env_id(env_id: str) -> str:
    """Import the module of a ``module:Id`` id and return the plain ``Id`` (what runs record).

    Raises:
        ImportError: When the module cannot be imported.
    """
    module, name = split_env_id(env_id)
    if module is not None:
        import_env_modules([module])
    return name
