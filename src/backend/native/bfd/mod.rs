//! BFD (RFC 5880 asynchronous mode; RFC 5881 single hop, RFC 5883
//! multihop) for the native backend's peers: the router learns within a
//! detection time that this node is gone or frozen, instead of at the BGP
//! hold timer. A pure codec (`packet`), a pure session (`session`), and one
//! thread that runs every session's sockets and timers (`io`).

pub mod io;
pub mod packet;
pub mod session;
