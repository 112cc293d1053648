//! The routes of the all-in-one server: the command service's, the query
//! service's and the operations routes every process serves.

use ibl_edge::routes::{operations, sort};
pub use ibl_edge::routes::{Auth, Route};
use serde_json::Value;

/// The routes `ibl serve` serves, in registration order.
pub fn api() -> Vec<Route> {
    let mut table = ibl_command_service::server::table();
    table.extend(ibl_query_service::server::table());
    table.extend(ibl_query_service::audit::table());
    table
}

/// Every route, the operations routes included, in registration order.
pub fn table() -> Vec<Route> {
    let mut table = api();
    table.extend(operations());
    sort(&mut table);
    table
}

/// The OpenAPI 3.1 description of every route.
pub fn openapi() -> Value {
    ibl_edge::routes::openapi(&table())
}

/// The route table as Markdown, with what each route needs of its caller:
/// the README's "Routes and permissions" section is this text
/// (`ibl routes` prints it; a test keeps the README in step).
pub fn markdown() -> String {
    ibl_edge::routes::markdown(&table())
}
