//! browserd: self-hosted browser sessions over gRPC.
//!
//! # Layout
//! Layers, from the faces down to the plain types; each imports only the
//! layers below it, and requests flow down the list, answers and events up.
//!
//! Faces:
//! - [`api`]: the tonic `SessionService`, `ContextService` and
//!   `AdminService`: protos in, domain types out, errors to gRPC status
//!   codes. No business logic.
//! - [`front`]: the relay's and console's one HTTP listener (hyper):
//!   accepting, TLS, connection caps and backoff, the handshake timeout,
//!   and routing by path to the two routers below, which know nothing of
//!   each other.
//! - [`relay`]: the WebSocket relay behind every `connect_url`: the
//!   per-session cap, HTTP discovery, and the per-session CDP rules (client
//!   `Browser.close`; uploads and downloads by path stay inside the
//!   session's profile).
//! - [`console`]: the web console and live view (`/console`, an axum
//!   router): embedded pages, a JSON API and event stream over the
//!   engine's methods, and screencasts shared by every viewer of a page,
//!   opened with live view links ([`domain::live_view`]).
//! - [`cli`]: `browserd serve|sessions|contexts|projects|keys|nodes …`: the
//!   clap parser, and a client of a running server; `keys create` also
//!   works offline, on the database itself.
//! - `wire`: what the faces share: protobuf <-> domain conversions
//!   (`wire::proto`) and the messages' JSON shapes (`wire::json`).
//!
//! Services:
//! - [`sessions`]: the lifecycle engine, the only writer of session status,
//!   one file per question (its module doc names them): creating,
//!   supervising, ending, a node's place in a cluster, contexts, queries,
//!   the warm pool, retention, the relay's routes, live view links, client
//!   presence.
//! - [`access`]: checking API keys, and managing projects and keys.
//! - [`contexts`]: persistent contexts: ContextService's logic, and a
//!   context's browser state as sealed bytes (compressed, encrypted at
//!   rest). The engine restores one before a launch and saves one at a
//!   normal end.
//! - [`events`]: the event log's tail (every node's committed events, in
//!   sequence order), their live fan-out, and WatchSessions replay.
//! - [`cluster`]: several nodes on one PostgreSQL: this node's membership
//!   (lease, epoch, drain, the other nodes) and the forwarding of calls to
//!   the node that runs a session.
//!
//! Adapters:
//! - [`store`]: SeaORM persistence (SQLite or PostgreSQL); migrations live in
//!   the `migrations` crate.
//! - [`browser`]: Chromium processes, profiles and temp directories
//!   (`launch`, `handle` for a running one, `teardown`): the jail each
//!   runs in ([`browser::jail`]), the CDP pipe to each, shared by
//!   browserd and every relayed client ([`browser::pipe`]), the one reader
//!   of the OS process table ([`browser::process_table`]), each
//!   browser's network namespace (`browser::netns`), and a context's
//!   files and cookies in a profile ([`browser::profile_state`]); plus a
//!   minimal WebSocket CDP
//!   client for the tests and the bench (`browser::cdp`, feature
//!   `test-support`).
//! - [`egress`]: the network wall: each browser's egress proxy (its only
//!   way out of its namespace), the server's and the session's policy on
//!   where it may connect, upstream proxies (HTTP, HTTPS, SOCKS), and the
//!   bytes it carried.
//! - [`secret`]: the server secret and the connect tokens signed with it
//!   (nothing per session is stored to check one).
//! - [`tls`]: the certificate files, checked at start, and the TLS
//!   config of the gRPC server and of the relay.
//! - [`telemetry`]: tracing, and OpenTelemetry traces and metrics.
//!
//! Plain types:
//! - [`domain`]: what every layer above speaks: sessions and their events,
//!   contexts and their browser state, projects, keys and callers, live
//!   view links, launch values, page tokens, request bounds and the
//!   crate's [`domain::Error`]. Imports nothing of the crate.
//!
//! Beside the layers:
//! - [`config`]: `serve`'s flags and `BROWSERD_*` environment, checked once.
//! - [`node_lock`]: one node per data directory and per SQLite file.
//! - `harness`: a real server on ephemeral ports and fresh databases, for
//!   the integration tests and `browserd-bench` (`src/bin/browserd-bench/`,
//!   one file per section); not used by the service, and built only with
//!   the `test-support` feature, which the tests (through their
//!   dev-dependency on this crate) and the bench turn on.
//!
//! `server` ([`run`]) wires them together over listeners the caller has
//! bound, runs until the `shutdown` future resolves, and says why a start
//! is refused ([`StartError`]). `src/main.rs` is the binary: the parser,
//! telemetry, the listeners and the signals.

pub mod access;
pub(crate) mod api;
pub mod browser;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod console;
pub mod contexts;
pub mod domain;
pub mod egress;
pub(crate) mod events;
pub mod front;
#[cfg(feature = "test-support")]
pub mod harness;
pub(crate) mod node_lock;
pub(crate) mod relay;
pub mod secret;
mod server;
pub(crate) mod sessions;
pub mod store;
pub mod telemetry;
pub(crate) mod tls;
mod wire;

/// Generated protobuf and gRPC code for `browserd.v1`.
pub mod pb {
    tonic::include_proto!("browserd.v1");

    /// Encoded descriptors of `proto/`, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/browserd_descriptor.bin"));
}

pub use server::{StartError, WARM_POOL_HEALTH, run};
