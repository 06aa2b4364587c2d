# C types for helix/server/exchange.py compiled as helix._fast.exchange_c (exchange_c.py is a
# link to it): a request's and its exchange's state in C structs, so the typed protocol
# (protocol_c) builds them and reads them back without dictionaries or slot descriptors.
# The pure module stays the reference and the HELIX_NO_EXTENSIONS=1 build.

# The client connection typed (an alias: exchange.py names HttpProtocol only for type
# checkers): the exchange reads its state and calls response_complete as C. protocol_c.pxd
# cimports this module too; protocol.py binds Exchange before its other helix imports so
# that either module can be loaded first.
from helix._fast.protocol_c cimport HttpProtocol as _Proto

cdef int _IDLE, _STREAMING, _DONE
cdef Py_ssize_t _CONCAT_LIMIT
cdef dict _STATUS_LINES  # writer's, imported: looked up per response


cdef class Request:
    cdef public object _client
    cdef public object body
    cdef public object headers
    cdef public object http_version
    cdef public bint keep_alive
    cdef public object method
    cdef public object path
    cdef public object query


cdef class Exchange:
    cdef public Py_ssize_t _bytes
    cdef public bint _chunked
    cdef public _Proto _conn
    cdef public bint _keep_alive
    cdef public object _reject
    cdef public double _started
    cdef public Py_ssize_t _state
    cdef public Py_ssize_t _status
    cdef public bint committed
    cdef public Request request

    cpdef bint _keep(self, int status)


cdef object _response_head(object status, object headers, object length, bint chunked,
                           bint close, bint keep_alive_10, object server)


cdef class RelaySink:
    cdef public object capture
    cdef public object exchange
    cdef public object feed
    cdef public object last
    cdef public object out
