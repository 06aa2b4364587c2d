# C types for helix/client/pool.py compiled as helix._fast.pool_c (pool_c.py is a link to it):
# the pool, an origin's pool record and an upstream response in C structs, so the pool's
# request path (take an idle connection, send, take the answer, release) runs without slot
# descriptors or instance dictionaries.
# helix.client re-exports the build it picks; the pure module stays the reference and the
# HELIX_NO_EXTENSIONS=1 build.

cimport cython

# The connection typed (an alias: pool.py binds the name Connection at run time).
from helix._fast.conn_c cimport Connection as _Conn


cdef class _OriginPool:
    cdef public Py_ssize_t active
    cdef public object conns
    cdef public object host_line
    cdef public object idle
    cdef public object label
    cdef public object origin
    cdef public object ssl
    cdef public bint verify
    cdef public object waiters


cdef class UpstreamPool:
    cdef public bint _closed
    cdef public dict _insecure
    cdef public object _loop
    cdef public dict _pools
    cdef public object _resolver
    cdef public object _ssl_factory
    cdef public object _sweep
    cdef readonly object limits
    cdef Py_ssize_t _max_idle
    cdef object _max_bytes

    cpdef _take_idle(self, _OriginPool op)
    @cython.locals(op=_OriginPool)
    cpdef _release(self, _Conn conn)
    cpdef _release_slot(self, _OriginPool op)


cdef class UpstreamResponse:
    cdef public _Conn _conn
    cdef public object _error
    cdef public bint _json
    cdef public object _label
    cdef public object _max_bytes
    cdef public object _pool
    cdef public Py_ssize_t _relayed
    cdef public double _started
    cdef public object _stream_total
    cdef public bint _streaming
    cdef public object headers
    cdef public object read_result
    cdef public object reader
    cdef public Py_ssize_t status

    cdef _check(self, data)
    cpdef _finish(self, _Conn conn)
    cpdef _abandon(self, _Conn conn)
