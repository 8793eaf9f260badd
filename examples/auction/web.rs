//! The small web app in front of the service (axum):
//!
//! ```text
//! POST /auctions/{auction}/questions                      {"buyer", "text"}     → 201
//! POST /auctions/{auction}/questions/{question}/read      {"seller"}            → 200
//! POST /auctions/{auction}/questions/{question}/answer    {"seller", "answer"}  → 200
//! GET  /sellers/{seller}/questions                        → {"seller", "unread", "questions"}
//! ```
//!
//! An accepted command answers `{"command_id", "position", "events": [...]}` once the
//! read model shows it; a refused one `{"error": <code>, "message"}` (`404
//! unknown_auction`, `403 buyer_blocked`, `409` for the auction's other rejections).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{Request as HttpRequest, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::audit::Request;
use super::domain::AuctionRejection;
use super::service::{AuctionService, Handled, ServiceError};

/// The web app of `service`.
pub fn app(service: Arc<AuctionService>) -> Router {
    Router::new()
        .route("/auctions/{auction}/questions", post(ask))
        .route("/auctions/{auction}/questions/{question}/read", post(read))
        .route(
            "/auctions/{auction}/questions/{question}/answer",
            post(answer),
        )
        .route("/sellers/{seller}/questions", get(seller_questions))
        .with_state(service)
}

#[derive(Deserialize)]
struct AskBody {
    buyer: String,
    text: String,
}

#[derive(Deserialize)]
struct ReadBody {
    seller: String,
}

#[derive(Deserialize)]
struct AnswerBody {
    seller: String,
    answer: String,
}

async fn ask(
    State(service): State<Arc<AuctionService>>,
    Path(auction): Path<String>,
    Json(body): Json<AskBody>,
) -> Response {
    let request = Request::AskQuestion {
        auction,
        buyer: body.buyer,
        text: body.text,
    };
    respond(StatusCode::CREATED, service.handle(request).await)
}

async fn read(
    State(service): State<Arc<AuctionService>>,
    Path((auction, question_id)): Path<(String, String)>,
    Json(body): Json<ReadBody>,
) -> Response {
    let request = Request::ReadQuestion {
        auction,
        question_id,
        seller: body.seller,
    };
    respond(StatusCode::OK, service.handle(request).await)
}

async fn answer(
    State(service): State<Arc<AuctionService>>,
    Path((auction, question_id)): Path<(String, String)>,
    Json(body): Json<AnswerBody>,
) -> Response {
    let request = Request::AnswerQuestion {
        auction,
        question_id,
        seller: body.seller,
        answer: body.answer,
    };
    respond(StatusCode::OK, service.handle(request).await)
}

async fn seller_questions(
    State(service): State<Arc<AuctionService>>,
    Path(seller): Path<String>,
) -> Response {
    match service.seller_questions(&seller).await {
        Ok(page) => Json(page).into_response(),
        Err(error) => failed(&error),
    }
}

/// The one place a command's outcome becomes a response.
fn respond(accepted: StatusCode, outcome: Result<Handled, ServiceError>) -> Response {
    match outcome {
        Ok(handled) => (
            accepted,
            Json(json!({
                "command_id": handled.command_id,
                "position": handled.position.map(|p| p.get()),
                "events": handled.events,
            })),
        )
            .into_response(),
        Err(ServiceError::UnknownAuction(auction)) => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "unknown_auction", "message": format!("no auction '{auction}'")})),
        )
            .into_response(),
        Err(ServiceError::Rejected(rejection)) => {
            let status = match rejection {
                AuctionRejection::BuyerBlocked { .. } => StatusCode::FORBIDDEN,
                _ => StatusCode::CONFLICT,
            };
            (
                status,
                Json(json!({"error": rejection.code(), "message": rejection.to_string()})),
            )
                .into_response()
        }
        Err(ServiceError::Failed(error)) => failed(&error),
    }
}

fn failed(error: &anyhow::Error) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({"error": "internal", "message": format!("{error:#}")})),
    )
        .into_response()
}

/// A client of the web app that needs no socket: each request goes through the
/// router in process (`tower::ServiceExt::oneshot`), as axum's own tests do.
#[derive(Debug, Clone)]
pub struct WebClient {
    app: Router,
}

impl WebClient {
    /// A client of the web app of `service`.
    pub fn new(service: Arc<AuctionService>) -> Self {
        WebClient { app: app(service) }
    }

    /// `POST uri` with a JSON body.
    pub async fn post(&self, uri: &str, body: Value) -> anyhow::Result<(StatusCode, Value)> {
        let request = HttpRequest::post(uri)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))?;
        self.send(request).await
    }

    /// `GET uri`.
    pub async fn get(&self, uri: &str) -> anyhow::Result<(StatusCode, Value)> {
        self.send(HttpRequest::get(uri).body(Body::empty())?).await
    }

    async fn send(&self, request: HttpRequest<Body>) -> anyhow::Result<(StatusCode, Value)> {
        let response = self.app.clone().oneshot(request).await?;
        let status = response.status();
        let bytes = response.into_body().collect().await?.to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok((status, body))
    }
}
