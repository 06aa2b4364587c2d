# C types for helix/server/protocol.py compiled as helix._fast.protocol_c (protocol_c.py is a
# link to it): the client connection's state lives in a C struct instead of slots, the
# internal steps are C calls, and the phase/timer constants are C ints.  The pure module
# stays the reference and the HELIX_NO_EXTENSIONS=1 build.  Every attribute stays public
# (read by Exchange, Server and the tests).

cimport cython

# The exchange typed (an alias: protocol.py binds the name Exchange at run time).
# exchange_c.pxd cimports this module back: loading either loads the other, so protocol.py
# binds Exchange before the imports that load the server package (which reads it).
from helix._fast.exchange_c cimport Exchange as _Ex

cdef int _P_IDLE, _P_HEAD, _P_BODY
cdef int _T_NONE, _T_KEEPALIVE, _T_HEADER, _T_BODY

# The bounded caches of the request path (header names, methods, Host values seen).
cdef dict _METHODS
cdef list _TABLE
cdef Py_ssize_t _PAIRS
cdef unsigned int _M32
cdef set _HOSTS_OK
cdef object _last_limits


# The name's hash a C loop over its bytes.
@cython.locals(h=cython.uint, c=cython.uchar, i=Py_ssize_t, raw=bytes, other=bytes)
cdef str _header_name(bytes name)


cdef double _SLOT
cdef Py_ssize_t _COMPACT_AFTER


cdef class _Timeouts:
    cdef object _loop, _handle
    cdef dict _slots
    cdef list _heap
    cdef Py_ssize_t _at, _held, _cancelled

    @cython.locals(key=Py_ssize_t, bucket=list, entry=list)
    cpdef list add(self, double deadline, proto)
    @cython.locals(held=Py_ssize_t, bucket=list)
    cpdef cancel(self, list entry)
    cdef _arm(self, Py_ssize_t key)


cdef class _Limits:
    cdef public Py_ssize_t max_header_bytes, max_headers, max_body_bytes
    cdef public Py_ssize_t max_buffered_body_bytes, max_pipelined
    cdef public Py_ssize_t write_high_water, write_low_water
    cdef public double header_timeout, body_timeout, keepalive_timeout
    cdef public object source


# The typed limits and the timeouts queue of a server, found once per connection: C calls.
cdef _Limits _limits_of(limits)
cdef _Timeouts _timeouts_of(server)


cdef class HttpProtocol:
    cdef public object _access_log
    cdef public object _body
    cdef public Py_ssize_t _body_len
    cdef public bint _chunked
    cdef public object _client
    cdef public bint _continue_pending
    cdef public _Ex _current
    cdef public bint _dead
    cdef public double _deadline
    cdef public object _drain_waiter
    cdef public bint _extra
    cdef public object _handler
    cdef public Py_ssize_t _head_bytes
    cdef public Py_ssize_t _head_raw
    cdef public dict _headers
    cdef public Py_ssize_t _held
    cdef public bint _keep_alive
    cdef public bint _line11
    cdef public _Limits _limits
    cdef public object _linger
    cdef public object _loop
    cdef public object _method
    cdef public Py_ssize_t _nheaders
    cdef public Py_ssize_t _nrequests
    cdef public bint _peer_read
    cdef public object _parser
    cdef public object _path
    cdef public Py_ssize_t _pstate
    cdef public object _query
    cdef public object _queue
    cdef public bint _read_paused
    cdef public object _reject
    cdef public object _server
    cdef public object _task
    cdef public object _timer
    cdef public _Timeouts _timeouts
    cdef public double _timer_at
    cdef public Py_ssize_t _timer_kind
    cdef public object _url
    cdef public object _version
    cdef public object _waiter
    cdef public object _next
    cdef public bint closing
    cdef public bint draining
    cdef public bint lost
    cdef public object server_header
    cdef public object transport
    cdef public bint write_paused

    cpdef _reset_message(self)
    cpdef bint _head_too_large(self)
    cpdef _enqueue(self, _Ex exchange)
    cpdef _start(self, _Ex exchange)
    cpdef _release(self, Py_ssize_t n)
    cpdef _handler_finished(self)
    cpdef _arm_timer(self)
    cpdef response_complete(self, _Ex exchange)
    cpdef _pause_reading(self)
    cpdef _resume_reading(self)
    # httptools hands the header callback bytes: typed, its value's latin-1 decode is a direct
    # PyUnicode_DecodeLatin1 instead of a method call that looks the codec up by name.
    cpdef on_header(self, bytes name, bytes value)
