# C types for the compiled twin of sse_py.py (Cython pure-Python mode): the
# logic lives only in the .py; this file only adds types.
cimport cython

cdef class SSEParser:
    cdef bytearray _buf
    cdef list _data
    cdef object _event
    cdef bint _pending_cr

    @cython.locals(n=Py_ssize_t, pos=Py_ssize_t, lf=Py_ssize_t, cr=Py_ssize_t,
                   end=Py_ssize_t, nxt=Py_ssize_t, events=list, buf=bytearray)
    cpdef list feed(self, data)
    cdef _line(self, bytes line, list events)
    cpdef list close(self)
