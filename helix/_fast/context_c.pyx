# cython: language_level=3, boundscheck=False, wraparound=False
"""A request's context, made in C: the compiled twin of context_py.py.

``RequestContext.__init__`` (helix/pipeline/context.py) is thirty slot stores, ≈ 90
bytecodes and a Python frame on every request.  ``ContextFactory(cls).new(exchange, api,
started)`` makes the same object from a template: at start-up it runs ``cls(A, B, C)``
once with three marker arguments and reads every slot back, learning which slot holds
which argument and which holds a constant default (None, a bool, a number, a string) or a
new empty list.  Per request it allocates the object and stores those by offset.  A class
whose ``__init__`` does anything else (another default, a value computed from an
argument, a slot it leaves unset, a ``__dict__``) is made by calling it, as the twin does.
Parity: tests/fast/test_context_parity.py.
"""

from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_INCREF

from helix._fast.slots cimport MemberSlots, member_slots

__all__ = ["ContextFactory"]


cdef extern from "Python.h":
    ctypedef object (*allocfunc)(PyTypeObject *, Py_ssize_t)
    ctypedef struct _Alloc "PyTypeObject":
        allocfunc tp_alloc
        void *tp_new
    void *OBJECT_NEW "((void *)PyBaseObject_Type.tp_new)"
    void INCREF "Py_INCREF"(PyObject *)
    PyObject *PyList_New(Py_ssize_t)

cdef enum:
    MAX_SLOTS = 64
    ARG0 = -1  # kinds: an argument (-1..-3), a constant (0), a new empty list (1)
    CONST = 0
    NEW_LIST = 1


cdef class _Marker:
    pass


cdef class ContextFactory:
    cdef readonly object cls
    cdef readonly bint compiled  # False: cls is called (its __init__ is not plain)
    cdef Py_ssize_t n
    cdef Py_ssize_t offsets[MAX_SLOTS]
    cdef int kinds[MAX_SLOTS]
    cdef list _consts  # keeps each constant alive; values[i] borrows from it
    cdef PyObject *values[MAX_SLOTS]

    def __init__(self, cls):
        self.cls = cls
        self.compiled = False
        self._consts = []
        self.n = 0
        try:
            self._learn(cls)
        except Exception:
            self.compiled = False

    cdef int _learn(self, cls) except -1:
        cdef _Alloc *t = <_Alloc *><PyObject *>cls
        cdef MemberSlots ms
        cdef Py_ssize_t i
        cdef PyObject *v
        if type(cls) is not type or t.tp_new != OBJECT_NEW:
            return 0
        marks = (_Marker(), _Marker(), _Marker())
        template = cls(*marks)
        if not member_slots(cls, &ms, MAX_SLOTS):
            return 0
        self.n = ms.n
        for i in range(ms.n):
            self.offsets[i] = ms.offsets[i]
            v = (<PyObject **>((<char *><PyObject *>template) + ms.offsets[i]))[0]
            if v == NULL:
                return 0  # a slot __init__ leaves unset
            value = <object>v
            if value is marks[0] or value is marks[1] or value is marks[2]:
                self.kinds[i] = ARG0 - marks.index(value)
                self.values[i] = NULL
            elif type(value) is list and not value:
                self.kinds[i] = NEW_LIST
                self.values[i] = NULL
            elif value is None or type(value) in (bool, int, float, str, bytes):
                self.kinds[i] = CONST
                self._consts.append(value)
                self.values[i] = v
            else:
                return 0  # another kind of default (a dict, an object): __init__ runs
        self.compiled = True
        return 0

    def new(self, exchange, api, started):
        """``cls(exchange, api, started)``."""
        cdef Py_ssize_t i
        cdef PyObject *v
        cdef PyObject **base
        cdef int kind
        if not self.compiled:
            return self.cls(exchange, api, started)
        obj = (<_Alloc *><PyObject *>self.cls).tp_alloc(<PyTypeObject *><PyObject *>self.cls, 0)
        base = <PyObject **><char *><PyObject *>obj
        for i in range(self.n):
            kind = self.kinds[i]
            if kind == CONST:
                v = self.values[i]
            elif kind == NEW_LIST:
                v = PyList_New(0)
                if v == NULL:
                    raise MemoryError()
                (<PyObject **>((<char *>base) + self.offsets[i]))[0] = v  # owned already
                continue
            elif kind == ARG0:
                v = <PyObject *>exchange
            elif kind == ARG0 - 1:
                v = <PyObject *>api
            else:
                v = <PyObject *>started
            INCREF(v)
            (<PyObject **>((<char *>base) + self.offsets[i]))[0] = v
        return obj
