"""Symbolic values for staged code generation.

The PyTorch backend writes one class per def whose constructor takes the def's parameters,
and a network class whose constructor honours the network's parameters.  To know what each
layer's arguments are *as expressions of those parameters*, the compiler elaborates defs and
networks a second time with `Sym` values in place of numbers: `Sym` carries the number it
stands for (so every check the compiler makes still runs, on the compiled values) and the
Python expression that computes it (`4 * c`, `(in_h - 1) // stride + 1`).

Arithmetic builds simplified expressions (sums are kept as linear combinations, so
`in_h + 2 - 3 + 1` is `in_h`).  Equality is structural: two Syms are equal when their
expressions are, whatever their values, so a shape check passes only where it holds for
every value of the parameters.  Ordering compares values (it serves range checks).  Anything
that would turn a Sym into a plain number (`int()`, `range()`, `if sym:`) raises Unstageable:
the structure would depend on a value, and the backend then writes the specialised module."""

from __future__ import annotations

from typing import Any


class Unstageable(Exception):
    """A program whose structure depends on a parameter's value in a way the staged emitter
    cannot express; the backend writes the module specialised to the compiled values."""


ADD, MUL, ATOM = 1, 2, 3  # precedence of a rendered expression


class _Atom:
    """A term a linear form cannot open: a name, a product of two non-constants, a floor
    division.  `key` is canonical (equal atoms have equal keys)."""

    __slots__ = ("key", "text", "prec", "names", "parts")

    def __init__(self, key, text: str, prec: int, names: frozenset[str], parts=None):
        self.key, self.text, self.prec, self.names, self.parts = key, text, prec, names, parts


def _wrap(v, prec: int, strict: bool = False) -> str:
    """The text of `v` as an operand at precedence `prec` (strict: parenthesise equal ones too)."""
    if isinstance(v, Sym):
        p = v.prec
        text = v.text
    else:
        text = repr(v)
        p = ATOM if not (isinstance(v, int | float) and v < 0) else ADD
    if p < prec or (strict and p == prec):
        return f"({text})"
    return text


class Sym:
    """A number known by value and by the expression (over named leaves) that computes it."""

    __slots__ = ("terms", "const", "value", "_text")

    def __init__(self, terms: dict, const, value):
        self.terms = terms  # atom key → (atom, coefficient); never empty
        self.const = const
        self.value = value
        self._text: str | None = None

    # ---- construction ----

    @staticmethod
    def leaf(name: str, value) -> Sym:
        return Sym({("name", name): (_Atom(("name", name), name, ATOM, frozenset({name})), 1)}, 0, value)

    @staticmethod
    def _of(terms: dict, const, value):
        terms = {k: v for k, v in terms.items() if v[1] != 0}
        if not terms:
            return const
        return Sym(terms, const, value)

    @staticmethod
    def _atom(atom: _Atom, value) -> Sym:
        return Sym({atom.key: (atom, 1)}, 0, value)

    # ---- reading ----

    @property
    def key(self):
        return (frozenset((k, c) for k, (_, c) in self.terms.items()), self.const)

    @property
    def names(self) -> frozenset[str]:
        out: frozenset[str] = frozenset()
        for atom, _ in self.terms.values():
            out |= atom.names
        return out

    @property
    def prec(self) -> int:
        if len(self.terms) == 1 and self.const == 0:
            atom, coef = next(iter(self.terms.values()))
            if coef == 1:
                return atom.prec
            return MUL if coef > 0 else ADD
        return ADD

    @property
    def text(self) -> str:
        if self._text is None:
            parts: list[str] = []
            for atom, coef in self.terms.values():
                if abs(coef) == 1:
                    body = _wrap_atom(atom, MUL)
                else:
                    body = f"{abs(coef)!r} * {_wrap_atom(atom, MUL, strict=True)}"
                if not parts:
                    if coef == -1:
                        body = f"-{_wrap_atom(atom, ATOM)}"
                    elif coef < 0:
                        body = f"-{body}"
                    parts.append(body)
                else:
                    parts.append(f" - {body}" if coef < 0 else f" + {body}")
            if self.const:
                parts.append(f" - {abs(self.const)!r}" if self.const < 0 else f" + {self.const!r}")
            self._text = "".join(parts)
        return self._text

    def single(self) -> tuple[_Atom, Any] | None:
        """(atom, constant) when this is `atom + constant`."""
        if len(self.terms) == 1:
            atom, coef = next(iter(self.terms.values()))
            if coef == 1:
                return atom, self.const
        return None

    # ---- arithmetic ----

    def __add__(self, other):
        if isinstance(other, Sym):
            terms = dict(self.terms)
            for k, (atom, c) in other.terms.items():
                terms[k] = (atom, terms[k][1] + c) if k in terms else (atom, c)
            return Sym._of(terms, self.const + other.const, self.value + other.value)
        if isinstance(other, int | float) and not isinstance(other, bool):
            return Sym(dict(self.terms), self.const + other, self.value + other)
        return NotImplemented

    __radd__ = __add__

    def __neg__(self):
        return Sym({k: (a, -c) for k, (a, c) in self.terms.items()}, -self.const, -self.value)

    def __sub__(self, other):
        if not isinstance(other, Sym | int | float):
            return NotImplemented
        return self + (-other)

    def __rsub__(self, other):
        return (-self) + other

    def __mul__(self, other):
        if isinstance(other, int | float) and not isinstance(other, bool):
            if other == 0:
                return 0
            return Sym._of({k: (a, c * other) for k, (a, c) in self.terms.items()}, self.const * other,
                           self.value * other)
        if isinstance(other, Sym):
            a, b = sorted((self, other), key=lambda s: repr(s.key))
            atom = _Atom(("mul", a.key, b.key), f"{_wrap(a, MUL)} * {_wrap(b, MUL, strict=True)}", MUL,
                         a.names | b.names)
            return Sym._atom(atom, self.value * other.value)
        return NotImplemented

    __rmul__ = __mul__

    def __floordiv__(self, other):
        return floordiv(self, other)

    def __rfloordiv__(self, other):
        return floordiv(other, self)

    def __mod__(self, other):  # only range checks take remainders: the compiled value's
        return self.value % concrete(other)

    def __rmod__(self, other):
        return concrete(other) % self.value

    def __abs__(self):
        return abs(self.value)

    # ---- comparison: structural equality, ordering by value ----

    def __eq__(self, other):
        return isinstance(other, Sym) and self.key == other.key

    def __ne__(self, other):
        return not self.__eq__(other)

    def __hash__(self):
        return hash(self.key)

    def __lt__(self, other):
        return self.value < concrete(other)

    def __le__(self, other):
        return self.value <= concrete(other)

    def __gt__(self, other):
        return self.value > concrete(other)

    def __ge__(self, other):
        return self.value >= concrete(other)

    # ---- what must not happen silently ----

    def __bool__(self):
        raise Unstageable(f"a decision on the value of `{self.text}`")

    def __index__(self):
        raise Unstageable(f"`{self.text}` used as a count")

    __int__ = __index__

    def __float__(self):
        raise Unstageable(f"`{self.text}` converted to a number")

    # ---- text ----

    def __repr__(self) -> str:
        return self.text

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return self.text


def _wrap_atom(atom: _Atom, prec: int, strict: bool = False) -> str:
    return f"({atom.text})" if atom.prec < prec or (strict and atom.prec == prec) else atom.text


def floordiv(a, b):
    if not isinstance(b, Sym):
        if isinstance(a, Sym):
            if b == 1 and isinstance(a.value, int):
                return a
            if isinstance(b, int) and b > 0 and all(isinstance(c, int) and c % b == 0 for _, c in a.terms.values()) \
                    and isinstance(a.const, int) and a.const % b == 0:
                return Sym._of({k: (t, c // b) for k, (t, c) in a.terms.items()}, a.const // b, a.value // b)
        else:
            return a // b
    key = ("div", a.key if isinstance(a, Sym) else a, b.key if isinstance(b, Sym) else b)
    atom = _Atom(key, f"{_wrap(a, MUL)} // {_wrap(b, MUL, strict=True)}", MUL,
                 (a.names if isinstance(a, Sym) else frozenset()) | (b.names if isinstance(b, Sym) else frozenset()),
                 parts=(a, b))
    return Sym._atom(atom, concrete(a) // concrete(b))


def function(name: str, args: list):
    """`min(a, b)` or `max(a, b)` of values some of which are Syms: an atom whose text is the
    Python call (both are builtins, so a generated constructor computes it as the compiler did)."""
    pick = {"min": min, "max": max}[name]
    key = ("fn", name) + tuple(a.key if isinstance(a, Sym) else a for a in args)
    names = frozenset().union(*(a.names for a in args if isinstance(a, Sym)))
    text = f"{name}({', '.join(a.text if isinstance(a, Sym) else repr(a) for a in args)})"
    return Sym._atom(_Atom(key, text, ATOM, names), pick(concrete(a) for a in args))


def concrete(v):
    """The number a value stands for (tuples element-wise)."""
    if isinstance(v, Sym):
        return v.value
    if isinstance(v, tuple):
        return tuple(concrete(x) for x in v)
    return v


def names_in(v) -> frozenset[str]:
    """The leaves a value (or a tuple, list or dict of values) depends on."""
    if isinstance(v, Sym):
        return v.names
    if isinstance(v, tuple | list):
        out: frozenset[str] = frozenset()
        for x in v:
            out |= names_in(x)
        return out
    if isinstance(v, dict):
        return names_in(list(v.values()))
    return frozenset()


def is_symbolic(v) -> bool:
    return bool(names_in(v))


def subsample_stride(size, out):
    """The stride s of a 1x1 conv (or slice ::s) taking `size` to `out` along one axis, as an
    expression: 1 when they are the same, s when `out` is `(size - 1) // s + 1`."""
    if size == out:
        return 1
    if not isinstance(size, Sym) and not isinstance(out, Sym):
        s = -(-size // out)
        if out <= size and -(-size // s) == out:
            return s
    if isinstance(out, Sym):
        one = out.single()
        if one is not None and one[1] == 1 and one[0].parts is not None:
            num, den = one[0].parts
            if num == size - 1:
                return den
    raise Unstageable(f"no stride expression takes {size} to {out}")
