//! The web console: `GET /console` (and `/console/{asset}`), a page of plain HTML, CSS
//! and JavaScript compiled into the binary (no build step, nothing fetched at run
//! time), and `GET /` leading to it. The assets hold no data: the page calls the API
//! with the token the user gives it, so the assets need none.

use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use eventfold_wire::ErrorCode;

use crate::error::ApiError;

const INDEX: &str = include_str!("../console/index.html");
const SCRIPT: &str = include_str!("../console/console.js");
const STYLE: &str = include_str!("../console/console.css");

/// What the console's page may load: only its own assets and the API of this origin.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `GET /`: the console.
pub(super) async fn root() -> Redirect {
    Redirect::temporary("/console")
}

/// `GET /console`: the console's page.
pub(super) async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

/// `GET /console/{asset}`: its script and style sheet.
pub(super) async fn file(path: Result<Path<String>, PathRejection>) -> Result<Response, ApiError> {
    let Path(name) = path?;
    match name.as_str() {
        "console.js" => Ok(asset("text/javascript; charset=utf-8", SCRIPT)),
        "console.css" => Ok(asset("text/css; charset=utf-8", STYLE)),
        _ => Err(ApiError::new(
            ErrorCode::RouteNotFound,
            format!("the console has no asset '{name}'"),
        )),
    }
}

/// An asset, revalidated on each use (it changes with the binary).
fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
