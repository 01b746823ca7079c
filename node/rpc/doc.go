// Package rpc is Rumor's peer-to-peer RPC: pipelined request/response calls
// over long-lived connections, with deadlines carried from the caller's
// context to the handler.
//
// A [Client] keeps up to ClientOptions.ConnsPerPeer connections per address
// and multiplexes any number of concurrent calls over them, matching
// responses to calls by request id. A [Server] runs each request in its own
// goroutine (at most ServerOptions.MaxInFlight per connection) and answers in
// whatever order the handlers finish. Each connection has one writer
// goroutine that batches queued frames into a single flush.
//
// With ServerOptions.TLS and ClientOptions.TLS every connection is TLS:
// the handshake runs first, within HandshakeTimeout, and frames follow
// inside the TLS stream. The server handshakes in the connection's own
// goroutine (a slow or silent client never holds up Accept) and counts and
// closes a connection whose handshake fails, logging it at debug level only.
//
// # Frame format
//
// All integers are big-endian. Every frame is
//
//	u32 length    length of everything after this field
//	u8  version   1
//	u8  kind      1 request, 2 response, 3 error
//	u64 id        request id, chosen by the client, echoed by the server
//	...           kind-specific header
//	body          opaque bytes up to the end of the frame
//
// with the kind-specific header
//
//	request:  u16 method, u32 timeout in ms (the caller's remaining deadline; 0 = none)
//	response: nothing
//	error:    u16 code, u16 n, n bytes of message (UTF-8)
//
// The shortest legal frame is a response with an empty body: 10 bytes after
// the length. A reader rejects a length above its MaxFrame (64 MiB by
// default) or below the header size before allocating anything, and grows
// the frame's buffer only as bytes actually arrive, so a peer that announces
// a large frame and sends little costs little memory. An unknown version or
// kind, or a header that does not fit its length, closes that one
// connection; other connections are unaffected.
package rpc
