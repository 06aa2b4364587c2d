# C types for helix/client/connection.py compiled as helix._fast.conn_c (conn_c.py is a link
# to it): an upstream connection's state lives in a C struct instead of slots, so the
# response parser's callbacks and the pool's reads of it are C field accesses.  The pure
# module stays the reference and the HELIX_NO_EXTENSIONS=1 build.  The state constants
# (IDLE, HEAD, BODY, DONE) stay Python ints: the pool imports them.


cdef dict _LOWER

cdef class Connection:
    cdef public Py_ssize_t _head_size
    cdef public bint _informational
    cdef public int _version
    cdef public object _lost_cb
    cdef public object _parser
    cdef public object body
    cdef public object body_waiter
    cdef public Py_ssize_t buffered
    cdef public bint closed
    cdef public object deadline
    cdef public object due
    cdef public object error
    cdef public bint got_bytes
    cdef public bint head_only
    cdef public object head_waiter
    cdef public object headers
    cdef public object high_water
    cdef public bint keep_alive
    cdef public object label
    cdef public double last_used
    cdef public object loop
    cdef public object low_water
    cdef public object op
    cdef public bint paused
    cdef public object read_timeout
    cdef public Py_ssize_t requests
    cdef public bint retryable
    cdef public bint reusable
    cdef public object sink
    cdef public Py_ssize_t state
    cdef public Py_ssize_t status
    cdef public object timer
    cdef public double timer_at
    cdef public object transport

    cpdef _wake_body(self, exc=*)
    cpdef bint _http11(self, object parser)
    # Called on every exchange by this class and by the pool's UpstreamResponse (which holds
    # its connection typed): C calls, not method lookups by name.
    cpdef _arm(self, double when)
    cpdef _cancel_timer(self)
    cpdef _drop_timer(self)
    cpdef _complete(self)
    cpdef _push(self)
    cpdef take(self)
    cpdef reset_idle(self, double now)
