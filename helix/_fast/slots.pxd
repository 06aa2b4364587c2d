# cython: language_level=3
"""Reading a ``__slots__`` attribute of a plain Python object from compiled code at the
cost of a pointer load: ``helix/_fast/*.pyx`` cimport this (inline: no module of its own).

From compiled code ``ctx.status`` is ``PyObject_GetAttr``: the generic lookup (the type's
attribute cache, the member descriptor, its getter), ≈ 60 instructions and a few cold cache
lines each, where the interpreter's specialised ``LOAD_ATTR_SLOT`` is a load at a known
offset.  A :c:type:`Fields` keeps, for the last type it saw, each name's offset in the
object (read once from the type's member descriptors); :c:func:`field` then loads the
pointer when the object is of that type, unchanged since (its ``tp_version_tag``, which
CPython bumps on any change to the type or its bases), and set.  Anything else -- another
type, a name that is not a plain object slot, a type with its own ``__getattribute__``, an
unset slot -- is ``getattr`` as before, with the same result or error.
"""

from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_INCREF, Py_XDECREF

cdef extern from "Python.h":
    ctypedef struct PyMemberDef:
        const char *name
        int type
        Py_ssize_t offset
        int flags
    ctypedef struct PyMemberDescrObject:
        PyMemberDef *d_member
    ctypedef struct _TypeTag "PyTypeObject":
        unsigned int tp_version_tag
        void *tp_getattro
        void *tp_setattro
    ctypedef struct _Sized "PyTypeObject":
        Py_ssize_t tp_basicsize
        Py_ssize_t tp_itemsize
        Py_ssize_t tp_dictoffset
        Py_ssize_t tp_weaklistoffset
    void *GENERIC_GETATTR "((void *)PyObject_GenericGetAttr)"
    void *GENERIC_SETATTR "((void *)PyObject_GenericSetAttr)"
    PyTypeObject PyMemberDescr_Type

cdef extern from "structmember.h":
    int T_OBJECT_EX_ "T_OBJECT_EX"
    int READONLY_ "READONLY"

cdef enum:
    MAX_FIELDS = 16


cdef struct Fields:
    PyObject *tp        # the type the offsets are for (a strong reference), or NULL
    unsigned int tag    # its tp_version_tag then
    PyObject *names     # the tuple of names (a strong reference)
    Py_ssize_t n
    Py_ssize_t off[MAX_FIELDS]  # 0: not a plain object slot of tp (getattr)
    bint wr[MAX_FIELDS]  # stored by offset too: a writable slot, tp's setattr the generic one


cdef inline int fields_init(Fields *f, tuple names) except -1:
    if len(names) > MAX_FIELDS:
        raise ValueError("too many fields")
    f.tp = NULL
    f.tag = 0
    f.n = len(names)
    Py_INCREF(names)
    f.names = <PyObject *>names
    return 0


cdef inline object _member(type tp, d):
    """``d`` when it is a member descriptor of ``tp`` or one of its bases (one taken from
    another class describes another layout: its getter raises, an offset read would not)."""
    if d is None or (<PyObject *>d).ob_type != &PyMemberDescr_Type:
        return None
    return d if issubclass(tp, d.__objclass__) else None


cdef inline int _bind(Fields *f, object obj) except -1:
    cdef type tp = type(obj)
    cdef _TypeTag *t = <_TypeTag *><PyObject *>tp
    cdef Py_ssize_t i
    cdef PyMemberDef *m
    Py_XDECREF(f.tp)
    f.tp = NULL
    generic = t.tp_getattro == GENERIC_GETATTR
    settable = t.tp_setattro == GENERIC_SETATTR  # not msgspec's (frozen, GC tracking)
    for i in range(f.n):
        f.off[i] = 0
        f.wr[i] = False
        if not generic:
            continue
        d = _member(tp, getattr(tp, <str>(<tuple>f.names)[i], None))
        if d is None:
            continue
        m = (<PyMemberDescrObject *><PyObject *>d).d_member
        if m.type == T_OBJECT_EX_ and m.offset > 0:
            f.off[i] = m.offset
            f.wr[i] = settable and not (m.flags & READONLY_)
    f.tag = t.tp_version_tag
    if f.tag == 0:  # no version tag to check later: never trusted
        return 0
    Py_INCREF(tp)
    f.tp = <PyObject *>tp
    return 0


cdef inline object field(Fields *f, object obj, Py_ssize_t i):
    """``getattr(obj, names[i])``."""
    cdef PyObject *tp = <PyObject *>(<PyObject *>obj).ob_type
    cdef PyObject *v
    cdef Py_ssize_t off
    if tp != f.tp or (<_TypeTag *>tp).tp_version_tag != f.tag:
        _bind(f, obj)
    if tp == f.tp:
        off = f.off[i]
        if off:
            v = (<PyObject **>((<char *><PyObject *>obj) + off))[0]
            if v != NULL:
                return <object>v
    return getattr(obj, <str>(<tuple>f.names)[i])


cdef enum:
    MAX_MEMBERS = 64


cdef struct MemberSlots:
    Py_ssize_t n
    Py_ssize_t offsets[MAX_MEMBERS]


cdef inline bint member_slots(type tp, MemberSlots *out) except -1:
    """Every object slot of ``tp``'s instances (``__slots__`` of it and its bases), when
    they are all it stores: no ``__dict__``, no ``__weakref__``, nothing but plain object
    slots after the object header (else False)."""
    cdef _Sized *t = <_Sized *><PyObject *>tp
    cdef PyMemberDef *m
    cdef Py_ssize_t off
    if t.tp_dictoffset != 0 or t.tp_weaklistoffset != 0 or t.tp_itemsize != 0:
        return False
    seen = set()
    out.n = 0
    for klass in tp.__mro__:
        for d in (<type>klass).__dict__.values():
            if (<PyObject *>d).ob_type != &PyMemberDescr_Type:
                continue
            if _member(tp, d) is None:
                return False
            m = (<PyMemberDescrObject *><PyObject *>d).d_member
            if m.type != T_OBJECT_EX_:
                return False
            off = m.offset
            if off in seen:
                continue
            if out.n >= MAX_MEMBERS:
                return False
            seen.add(off)
            out.offsets[out.n] = off
            out.n += 1
    return t.tp_basicsize == <Py_ssize_t>sizeof(PyObject) + out.n * <Py_ssize_t>sizeof(PyObject *)


cdef inline int set_field(Fields *f, object obj, Py_ssize_t i, object value) except -1:
    """``setattr(obj, names[i], value)``."""
    cdef PyObject *tp = <PyObject *>(<PyObject *>obj).ob_type
    cdef PyObject **p
    cdef PyObject *old
    if tp != f.tp or (<_TypeTag *>tp).tp_version_tag != f.tag:
        _bind(f, obj)
    if tp == f.tp and f.wr[i]:
        p = <PyObject **>((<char *><PyObject *>obj) + f.off[i])
        old = p[0]
        Py_INCREF(value)
        p[0] = <PyObject *>value
        Py_XDECREF(old)
        return 0
    setattr(obj, <str>(<tuple>f.names)[i], value)
    return 0
