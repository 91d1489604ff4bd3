package httpserver

// MaxHeaderBytes caps a request's header block (http.Server's
// MaxHeaderBytes; Go's default is 1 MiB): the services' requests need a
// few KB, and each connection may hold this much while its headers are
// read. Beyond it (and net/http's 4 KB of slack), net/http itself answers
// 431 Request Header Fields Too Large, as text/plain, and closes the
// connection: the request never reaches the handlers, so it is neither
// problem+json nor in the access log or the metrics.
const MaxHeaderBytes = 64 << 10
