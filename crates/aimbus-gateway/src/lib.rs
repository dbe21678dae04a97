//! The HTTP side of aimbus: the gateway (messages and the registry over REST, behind JWT
//! bearer authentication with roles, every error as `application/problem+json`) and the
//! REST transport that delivers to systems with a `rest_api` interface.
#![forbid(unsafe_code)]

mod auth;
mod error;
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
pub use metrics::install_recorder;
pub use problem::Problem;
pub use rest_transport::RestTransport;
pub use server::run;
pub use state::Gateway;
