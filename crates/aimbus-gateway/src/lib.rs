//! The HTTP gateway of aimbus: messages and the registry over REST, behind JWT bearer
//! authentication with roles, answering every error as `application/problem+json`.
#![forbid(unsafe_code)]

mod auth;
mod error;
mod metrics;
mod openapi;
mod problem;
mod routes;
mod server;
mod state;

pub use auth::{Authenticator, Caller, Role, SECRET_ENV, TokenRequest, load_or_create_secret};
pub use error::Error;
pub use metrics::install_recorder;
pub use problem::Problem;
pub use server::run;
pub use state::Gateway;
