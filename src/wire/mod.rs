//! The wire layer every face shares: protobuf messages to domain types
//! and back ([`proto`]), and their JSON shapes ([`json`]). The gRPC API,
//! the console and the CLI all go through it; it holds no business logic
//! and imports no face.

pub mod json;
pub mod proto;
