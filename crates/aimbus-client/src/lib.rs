//! SDK for services taking part in aimbus: [`SystemWorker`] serves an AIM-OS system's
//! queue, [`GrpcSystem`] serves one over gRPC with the same handler, [`BusClient`]
//! publishes messages to the bus and awaits replies.
#![forbid(unsafe_code)]

mod client;
mod error;
mod grpc;
mod worker;

pub use client::BusClient;
pub use error::Error;
pub use grpc::GrpcSystem;
pub use worker::{HandlerError, SystemWorker, WorkerOptions, WorkerStats};
