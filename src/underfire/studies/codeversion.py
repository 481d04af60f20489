"""The code version of a cached part: the code it runs, *and the underfire code that code reaches*.

A part's result depends on more than its own function: the attacks, interpreters and models
it builds, their defaults and the module-level tables they read (presets, registries). A key
over the part's own bytecode alone would reuse a stale result after, say, an attack's default
changed. :func:`code_version` therefore walks from the part's function to every underfire
function, class, module-level value and registry it can reach by name (through globals, the
attributes of underfire modules it names, class members, base classes, defaults and
``functools.partial`` arguments) and hashes their compiled code and values.

Compiled code, not source text: editing or moving other lines of a file while a run goes on
changes no key, and neither does code the part cannot reach (reports, other studies). Code
outside underfire (torch, numpy) is versioned by name only: its version is the environment's.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import importlib
import re
import sys
import types
from collections.abc import Callable
from typing import Any

import torch

from underfire._version import __version__

__all__ = ["code_version"]

_PACKAGE = "underfire"
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
# class members that say nothing about behaviour, or repeat what is hashed elsewhere
_SKIPPED_MEMBERS = frozenset(
    {
        "__dict__",
        "__weakref__",
        "__doc__",
        "__module__",
        "__qualname__",
        "__annotations__",
        "__dataclass_params__",
        "__match_args__",
        "__parameters__",
        "__orig_bases__",
        "__abstractmethods__",
        "_abc_impl",
        "__static_attributes__",
        "__firstlineno__",
        "__annotate_func__",
        "__annotations_cache__",
    }
)
_MAX_DEPTH = 8


def _owned(obj: Any) -> bool:
    """Whether ``obj`` (a module, function or class) is underfire's own code."""
    name = obj.__name__ if isinstance(obj, types.ModuleType) else getattr(obj, "__module__", None)
    return isinstance(name, str) and (name == _PACKAGE or name.startswith(_PACKAGE + "."))


def _own_module(name: str) -> types.ModuleType | None:
    if name != _PACKAGE and not name.startswith(_PACKAGE + "."):
        return None
    if name not in sys.modules:
        try:
            importlib.import_module(name)
        except ImportError:
            return None
    return sys.modules[name]


def _names(code: types.CodeType) -> set[str]:
    """Every name ``code`` and its nested code objects (lambdas, comprehensions) look up."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


class _Walker:
    """Feeds the reachable underfire code into one digest; each object is fed once."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.seen: set[int] = set()

    def feed(self, text: str) -> None:
        self.digest.update(text.encode())
        self.digest.update(b"\0")

    def first_visit(self, obj: Any, label: str) -> bool:
        if id(obj) in self.seen:
            self.feed(f"again:{label}")
            return False
        self.seen.add(id(obj))
        self.feed(label)
        return True

    def code(self, code: types.CodeType) -> None:
        self.digest.update(code.co_code)
        self.feed(repr(code.co_names))
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                self.code(const)
            elif isinstance(const, frozenset):  # iteration order varies between processes
                self.feed(repr(sorted(map(repr, const))))
            else:
                self.feed(_ADDRESS.sub("", repr(const)))

    def function(self, fn: types.FunctionType, root: bool = False) -> None:
        # the part's own function by its code alone (its name or nesting changes no result)
        label = "part" if root else f"function:{fn.__module__}.{fn.__qualname__}"
        if not self.first_visit(fn, label):
            return
        self.code(fn.__code__)
        self.value(fn.__defaults__)
        self.value(fn.__kwdefaults__)
        if not (root or _owned(fn)):  # a user's own part function is followed too
            return
        scope = fn.__globals__
        names = sorted(_names(fn.__code__))
        modules = [v for v in scope.values() if isinstance(v, types.ModuleType) and _owned(v)]
        # a local ``from underfire.x import y`` names the module ``underfire.x`` and ``y``;
        # imported here if the function has not run yet, so the key never depends on the
        # order in which a process happened to import modules
        modules += [m for m in map(_own_module, names) if m is not None]
        for name in names:
            if name in scope:
                self.reference(scope[name])
            for module in modules:  # ``_io.write_json``: the attribute of an own module
                if name in vars(module):
                    self.reference(vars(module)[name])

    def klass(self, cls: type) -> None:
        if not self.first_visit(cls, f"class:{cls.__module__}.{cls.__qualname__}"):
            return
        for base in cls.__mro__[1:]:
            if _owned(base):
                self.klass(base)
        for name, member in sorted(vars(cls).items()):
            if name in _SKIPPED_MEMBERS:
                continue
            self.feed(f"member:{name}")
            if name == "__dataclass_fields__":
                for field_name, f in sorted(member.items()):
                    self.feed(f"field:{field_name}")
                    self.value(f.default)
                    self.value(f.default_factory)
            elif isinstance(member, (staticmethod, classmethod)):
                self.reference(member.__func__)
            elif isinstance(member, property):
                for accessor in (member.fget, member.fset, member.fdel):
                    self.reference(accessor)
            else:
                self.reference(member)

    def reference(self, obj: Any, depth: int = 0) -> None:
        """An object reached by name: own code is walked, values hashed, the rest named."""
        if isinstance(obj, types.FunctionType):
            if _owned(obj):
                self.function(obj)
            else:
                self.feed(f"foreign:{obj.__module__}.{obj.__qualname__}")
        elif isinstance(obj, types.MethodType):
            self.reference(obj.__func__, depth)
        elif isinstance(obj, functools.partial):
            self.reference(obj.func, depth)
            self.value(obj.args, depth + 1)
            self.value(obj.keywords, depth + 1)
        elif isinstance(obj, type):
            if _owned(obj):
                self.klass(obj)
            else:
                self.feed(f"foreign:{obj.__module__}.{obj.__qualname__}")
        elif isinstance(obj, types.ModuleType):
            self.feed(f"module:{obj.__name__}")  # its attributes are reached by name
        else:
            self.value(obj, depth)

    def value(self, v: Any, depth: int = 0) -> None:
        if depth > _MAX_DEPTH:
            self.feed("deep")
        elif v is None or isinstance(v, (bool, int, float, complex, str, bytes, enum.Enum)):
            self.feed(repr(v))
        elif isinstance(v, (tuple, list)):
            self.feed(f"{type(v).__name__}:{len(v)}")
            for item in v:
                self.value(item, depth + 1)
        elif isinstance(v, dict):
            self.feed(f"dict:{len(v)}")
            for k, item in sorted(v.items(), key=lambda kv: repr(kv[0])):
                self.value(k, depth + 1)
                self.value(item, depth + 1)
        elif isinstance(v, (set, frozenset)):
            self.feed(repr(sorted(_ADDRESS.sub("", repr(x)) for x in v)))
        elif isinstance(v, torch.Tensor):
            self.feed(f"tensor:{v.dtype}:{tuple(v.shape)}")
        elif isinstance(
            v, (types.FunctionType, types.MethodType, functools.partial, type, types.ModuleType)
        ):
            self.reference(v, depth)
        elif _owned(type(v)) and not isinstance(v, torch.nn.Module):
            # an own instance (a registry, a preset object): its class and its state
            if self.first_visit(v, f"instance:{type(v).__qualname__}"):
                self.klass(type(v))
                state = getattr(v, "__dict__", None)
                if state is None and hasattr(type(v), "__slots__"):
                    state = {s: getattr(v, s, None) for s in type(v).__slots__}
                self.value(state, depth + 1)
        else:
            self.feed(f"{type(v).__module__}.{type(v).__qualname__}:" + _ADDRESS.sub("", repr(v)))


def code_version(compute: Callable[..., Any], version: int | str = 1) -> str:
    """The code a part runs: its declared ``version``, underfire's version, and a digest of
    its function's compiled code and of all underfire code and module-level values that code
    reaches (a ``functools.partial`` also contributes its bound arguments)."""
    walker = _Walker()
    walker.feed(f"{__version__}|{version}")
    while isinstance(compute, functools.partial):
        walker.value((compute.args, compute.keywords))
        compute = compute.func
    if isinstance(compute, types.FunctionType):
        walker.function(compute, root=True)
    elif isinstance(compute, types.MethodType) and isinstance(compute.__func__, types.FunctionType):
        walker.function(compute.__func__, root=True)
    else:  # a built-in or another callable: its name must do
        walker.feed(getattr(compute, "__qualname__", repr(compute)))
    return walker.digest.hexdigest()[:16]
