//! The HTTP side of aimbus: the gateway (messages and the registry over REST, behind JWT
//! bearer authentication with roles, every error as `application/problem+json`) and the
//! transports that deliver to systems with a `rest_api` or a `grpc` interface.
#![forbid(unsafe_code)]

mod auth;
mod error;
mod grpc_api;
mod grpc_transport;
mod metrics;
mod openapi;
mod problem;
mod rest_transport;
mod routes;
mod server;
mod state;
mod trace;

pub use auth::{Authenticator, Caller, Role, SECRET_ENV, TokenRequest, load_or_create_secret};
pub use error::Error;
pub use grpc_api::GrpcServer;
pub use grpc_transport::GrpcTransport;
pub use metrics::install_recorder;
pub use problem::Problem;
pub use rest_transport::RestTransport;
pub use server::run;
pub use state::Gateway;
