"""Settings one way: an entry point takes its config dataclass or that dataclass's fields as keywords.

``@takes_config(Cls)`` on ``fn(..., *, config)`` gives ``fn`` one keyword-only parameter per field
of ``Cls`` (same name, same default, in order) beside ``config=``.  The keywords build ``Cls(**kw)``;
``config=Cls(...)`` is passed through; both at once is a ``TypeError`` naming the clashing keywords
(never a silent winner), and so is a config of another class (a subclass too: a ``RelPConfig``'s
rules would not reach a function that reads only ``AtPConfig``).  ``fn`` itself always receives a
``Cls`` instance, so its body reads one object.  Cost: one dict walk per call.

Design choice: the dataclass is the single list of settings (defaults, docs, validation in
``__post_init__``); the signature is generated from it, so the keywords cannot drift from it.
tests/test_configure.py checks every decorated function and that no function in ``interp/`` takes
more than eight parameters (more go into a config).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect


def field_default(f: dataclasses.Field):
    """A dataclass field's default (its factory called), or ``dataclasses.MISSING``."""
    return f.default_factory() if f.default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING \
        else f.default


def takes_config(cls):
    """Decorate an entry point ``fn(..., *, config)`` (or ``fn(..., config=None, *, ...)``, the config the
    last positional parameter) so that it takes its settings one way: either ``config=cls(...)`` or
    ``cls``'s fields as keywords, which then map one-to-one onto the fields (the signature shows them,
    keyword-only, with the dataclass's defaults).  Both at once is a ``TypeError`` naming the conflict,
    never a silent winner.  The wrapper's ``__config__`` is ``cls``."""
    fields = dataclasses.fields(cls)
    names = [f.name for f in fields]

    def deco(fn):
        own = inspect.signature(fn).parameters
        P = inspect.Parameter
        positional = [p for p in own.values() if p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)]
        at = len(positional) - 1 if positional and positional[-1].name == "config" else None
        if "config" not in own or (at is None and own["config"].kind is not P.KEYWORD_ONLY):
            raise TypeError(f"@takes_config: {fn.__qualname__} must take `config` keyword-only or last positional")
        if any(p.kind is P.VAR_KEYWORD for p in own.values()):  # a misspelt setting would vanish into it
            raise TypeError(f"@takes_config: {fn.__qualname__} takes **kwargs beside its config")
        shadowed = [n for n in names if n in own]
        if shadowed:  # the wrapper would take these keywords for the config: fn's own would never be set
            raise TypeError(f"@takes_config: {fn.__qualname__}'s parameters {shadowed} are fields of {cls.__name__}")

        @functools.wraps(fn)
        def wrapper(*args, config=None, **kw):
            if at is not None and len(args) > at:  # the config given positionally
                if config is not None or len(args) > at + 1:
                    raise TypeError(f"{fn.__name__}: too many positional arguments")
                args, config = args[:at], args[at]
            given = {k: kw.pop(k) for k in names if k in kw}
            if config is not None and given:
                raise TypeError(f"{fn.__name__}: pass either config={cls.__name__}(...) or its keywords "
                                f"{', '.join(given)}, not both")
            if config is not None and type(config) is not cls:
                raise TypeError(f"{fn.__name__}: config must be a {cls.__name__}, not {type(config).__name__}")
            return fn(*args, config=cls(**given) if config is None else config, **kw)

        cfg = P("config", P.KEYWORD_ONLY if at is None else P.POSITIONAL_OR_KEYWORD, default=None,
                annotation=f"{cls.__name__} | None")
        params = [cfg if p.name == "config" else p for p in own.values() if at is not None or p.name != "config"]
        params += [P(f.name, P.KEYWORD_ONLY, default=field_default(f), annotation=f.type) for f in fields]
        params += [cfg] if at is None else []
        wrapper.__signature__ = inspect.Signature(params, return_annotation=inspect.signature(fn).return_annotation)
        wrapper.__config__ = cls
        return wrapper

    return deco
