"""Make Lava 0.10 importable on Python 3.11.

Lava (``lava-nc`` 0.10.0) supports Python up to 3.10. Its module ``lava.magma.compiler.var_model``
declares a few dataclasses (``CoreEncoder``, ``ChipEncoder``, ``AxonEncoder``) whose fields default to a
shared ``ByteEncoder()`` instance. Since Python 3.11, :mod:`dataclasses` treats any unhashable default
(a non-frozen dataclass instance has ``__hash__ = None``) as mutable and raises ``ValueError`` when the
class is created, so importing Lava's runtime (and with it ``lava.lib.dl.netx``) fails.

:func:`install` puts an import hook at the front of :data:`sys.meta_path`. When, and only when,
``lava.magma.compiler.var_model`` is imported, the hook reads the module's source, rewrites each
``name: ByteEncoder = ByteEncoder()`` field into ``name: ByteEncoder = field(default_factory=ByteEncoder)``
and executes the result; ``field`` is :func:`dataclasses.field`, provided to the module under a private
name so that nothing in its namespace is overwritten. Every instance then gets its own encoder, which
is also what the original code meant. Line numbers are unchanged, so tracebacks still point at the
installed file.

The hook is inert where it is not needed: on Python < 3.11, when Lava is not installed, or when the
source contains no such default (a fixed Lava release), the module is loaded by its normal loader.

:func:`install` should run before the first import of Lava. Python drops the modules of a failed import
from :data:`sys.modules`, so a later import usually recovers, but names already bound by a failed import
(e.g. ``from lava... import X`` in a half-run module of the caller) are not repaired.
"""

from __future__ import annotations

import dataclasses
import importlib.abc
import importlib.machinery
import re
import sys
from collections.abc import Sequence
from types import ModuleType

__all__ = ["install"]

_TARGET = "lava.magma.compiler.var_model"
_FIELD_ALIAS = "_kdlib_dataclass_field"
# A class-body line such as "    x: ByteEncoder = ByteEncoder()"; the field name and annotation are kept.
_SHARED_DEFAULT = re.compile(r"^(\s+\w+\s*:\s*ByteEncoder\s*=\s*)ByteEncoder\(\)[ \t]*$", re.MULTILINE)


def _patch_source(source: str) -> str | None:
    """Return ``source`` with per-instance encoder defaults, or ``None`` if nothing needs changing."""
    patched, count = _SHARED_DEFAULT.subn(rf"\g<1>{_FIELD_ALIAS}(default_factory=ByteEncoder)", source)
    return patched if count else None


class _PatchingLoader(importlib.abc.Loader):
    """Load the target module from patched source, delegating everything else to the real loader."""

    def __init__(self, wrapped: importlib.machinery.SourceFileLoader) -> None:
        self._wrapped = wrapped

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._wrapped.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        source = self._wrapped.get_source(module.__name__)
        patched = _patch_source(source) if source is not None else None
        if patched is None:  # Nothing to fix: use the normal (bytecode-cached) path.
            self._wrapped.exec_module(module)
            return
        module.__dict__[_FIELD_ALIAS] = dataclasses.field
        exec(compile(patched, self._wrapped.get_filename(module.__name__), "exec"), module.__dict__)


class _LavaVarModelFinder(importlib.abc.MetaPathFinder):
    """Meta-path finder that hands the target module to :class:`_PatchingLoader`."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != _TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or not isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            return spec  # Not installed, or not plain source: let the import proceed unchanged.
        spec.loader = _PatchingLoader(spec.loader)
        return spec


def install() -> None:
    """Install the import hook (idempotent; a no-op on Python < 3.11). Call before importing Lava."""
    if sys.version_info < (3, 11):  # noqa: UP036 - the hook is only needed from 3.11 on.
        return
    if not any(isinstance(finder, _LavaVarModelFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _LavaVarModelFinder())
