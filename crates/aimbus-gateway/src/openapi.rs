//! The OpenAPI 3.1 document served at `/api/v1/openapi.json`. It is written by hand, and
//! a test checks that it names every route the server serves and nothing else.

pub(crate) const DOCUMENT: &str = include_str!("../openapi.json");
