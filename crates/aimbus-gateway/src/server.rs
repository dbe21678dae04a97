use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::middleware::{Compress, Condition};
use actix_web::{App, HttpServer, web};

use crate::{Error, Gateway, metrics, routes, trace};

/// Serves the gateway on `listener` (tests pass one bound to `127.0.0.1:0`) until the
/// returned server is stopped. Signals are left to the caller, which owns shutdown.
pub fn run(listener: TcpListener, gateway: Arc<Gateway>) -> Result<Server, Error> {
    let address = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let compress = gateway.compress;
    let data = web::Data::from(gateway);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .wrap(Condition::new(compress, Compress::default()))
            .wrap(actix_web::middleware::from_fn(metrics::record_request))
            // Outermost, so the span covers everything the request does.
            .wrap(actix_web::middleware::from_fn(trace::trace_request))
            .configure(routes::configure)
    })
    .disable_signals()
    .listen(listener)
    .map_err(|source| Error::Listen { address, source })?
    .run();
    Ok(server)
}
