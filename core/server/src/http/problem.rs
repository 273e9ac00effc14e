//! Errors as RFC 9457 problem details, JSON bodies checked with the field
//! named, and the responses that carry a revision as ETag; each documented
//! in the OpenAPI description.

use aide::OperationInput;
use aide::OperationOutput;
use aide::generate::GenContext;
use aide::openapi::{
    MediaType, Operation, Response as DocResponse, SchemaObject, StatusCode as DocStatus,
};
use axum::Json;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// An RFC 9457 problem: the status, a title, and what exactly is wrong.
#[derive(Clone, Debug, Serialize)]
pub struct Problem {
    #[serde(skip)]
    pub status: StatusCode,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: &'static str,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Every field at fault, when there are several.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldIssue>,
}

/// One field at fault and why.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct FieldIssue {
    pub field: String,
    pub message: String,
}

/// A problem as the API sends it (`application/problem+json`).
#[derive(Serialize, JsonSchema)]
#[allow(dead_code)]
pub struct ProblemDoc {
    /// Always "about:blank": the title says what kind of problem it is.
    #[serde(rename = "type")]
    kind: String,
    title: String,
    /// The HTTP status.
    status: u16,
    /// What exactly is wrong, in words.
    detail: String,
    /// The field of the request at fault, when there is one
    /// (`attributes.license_no` for an attribute).
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
    /// Every field at fault, when a rule refuses several.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    errors: Vec<FieldIssue>,
}

impl Problem {
    pub fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Problem {
        Problem {
            status,
            kind: "about:blank",
            title,
            detail: detail.into(),
            field: None,
            errors: Vec::new(),
        }
    }

    pub fn at(mut self, field: impl Into<String>) -> Problem {
        self.field = Some(field.into());
        self
    }

    pub fn not_found(what: impl Into<String>) -> Problem {
        Problem::new(StatusCode::NOT_FOUND, "Not found", what)
    }

    pub fn bad_request(title: &'static str, detail: impl Into<String>) -> Problem {
        Problem::new(StatusCode::BAD_REQUEST, title, detail)
    }

    pub fn internal(detail: impl std::fmt::Display) -> Problem {
        tracing::error!(%detail, "request failed");
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Unavailable",
            format!("the request could not be completed: {detail}"),
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body = serde_json::to_value(&self).unwrap_or(Value::Null);
        body["status"] = json!(self.status.as_u16());
        let mut response = (self.status, Json(body)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}

impl From<store::StoreError> for Problem {
    fn from(e: store::StoreError) -> Problem {
        match e {
            store::StoreError::Conflict(detail) => {
                Problem::new(StatusCode::CONFLICT, "Conflict", detail)
            }
            store::StoreError::MissingReference { field, value, .. } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Unknown reference",
                format!("{field} '{value}' does not exist"),
            )
            .at(field),
            store::StoreError::Invalid(detail) => {
                Problem::new(StatusCode::BAD_REQUEST, "Invalid request", detail)
            }
            other => Problem::internal(other),
        }
    }
}

/// Each refusal of the write path as the API answers it.
impl From<app::WriteError> for Problem {
    fn from(e: app::WriteError) -> Problem {
        use app::WriteError;
        match e {
            WriteError::Invalid { field, message } => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid value", message).at(field)
            }
            WriteError::ReadOnly { field, plugin } => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Read-only field",
                format!(
                    "{} is computed by plugin {plugin} and cannot be set",
                    field.trim_start_matches("attributes.")
                ),
            )
            .at(field),
            WriteError::Refused { issues } => {
                let detail: Vec<String> = issues.iter().map(|(f, m)| format!("{f}: {m}")).collect();
                let mut p = Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Refused by a rule",
                    detail.join("; "),
                );
                p.field = issues.first().map(|(f, _)| f.clone());
                p.errors = issues
                    .iter()
                    .map(|(field, message)| FieldIssue {
                        field: field.clone(),
                        message: message.clone(),
                    })
                    .collect();
                p
            }
            WriteError::Plugin(detail) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Refused by a plugin",
                detail,
            ),
            WriteError::Stale(detail) => Problem::new(
                StatusCode::PRECONDITION_FAILED,
                "Precondition failed",
                detail,
            )
            .at("If-Match"),
            WriteError::InUse(detail) => Problem::new(StatusCode::CONFLICT, "In use", detail),
            WriteError::Store(e) => e.into(),
            e @ (WriteError::NotDurable(_) | WriteError::Failed(_)) => Problem::internal(e),
        }
    }
}

/// The statuses every operation may answer with a problem.
const PROBLEMS: &[(u16, &str)] = &[
    (
        400,
        "The request is malformed: the field and the reason are named.",
    ),
    (401, "No token, or a token that is not known."),
    (403, "The token's role may not do this."),
    (404, "No such record or route."),
    (409, "The record exists already, or others depend on it."),
    (412, "The record changed since it was read (If-Match)."),
    (413, "The body is larger than the limit."),
    (415, "The body is not application/json."),
    (
        422,
        "The body is well formed but breaks a rule: the field is named.",
    ),
    (428, "If-Match is required to change this record."),
    (429, "Too many failed sign-ins from this address."),
    (503, "The store could not complete the request."),
];

fn problem_response(ctx: &mut GenContext, description: &str) -> DocResponse {
    let schema = ctx.schema.subschema_for::<ProblemDoc>();
    DocResponse {
        description: description.to_owned(),
        content: [(
            "application/problem+json".to_owned(),
            MediaType {
                schema: Some(SchemaObject {
                    json_schema: schema,
                    example: None,
                    external_docs: None,
                }),
                ..Default::default()
            },
        )]
        .into_iter()
        .collect(),
        ..Default::default()
    }
}

impl OperationOutput for Problem {
    type Inner = ProblemDoc;

    fn operation_response(ctx: &mut GenContext, _operation: &mut Operation) -> Option<DocResponse> {
        Some(problem_response(ctx, "A problem (RFC 9457)."))
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        _operation: &mut Operation,
    ) -> Vec<(Option<DocStatus>, DocResponse)> {
        PROBLEMS
            .iter()
            .map(|&(code, text)| (Some(DocStatus::Code(code)), problem_response(ctx, text)))
            .collect()
    }
}

/// A JSON request body as `T`: 415 for another content type, 400 naming
/// the field (or the place) that is wrong, unknown fields included.
pub(crate) struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let headers = request.headers().clone();
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    Problem::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "Body too large",
                        format!("the body is over the limit of {} bytes", super::MAX_BODY),
                    )
                } else {
                    Problem::bad_request("Unreadable body", e.body_text())
                }
            })?;
        if bytes.len() > super::MAX_BODY {
            return Err(Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Body too large",
                format!("the body is over the limit of {} bytes", super::MAX_BODY),
            ));
        }
        json_body(&headers, &bytes).map(Body)
    }
}

impl<T: JsonSchema> OperationInput for Body<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        <Json<T> as OperationInput>::operation_input(ctx, operation);
    }
}

/// A record to replace, as `GET` returns it: a `revision` member, when
/// given, is the revision the write expects (as If-Match is), and the rest
/// is the record, checked as `Body` checks it.
pub(crate) struct Replacement<T> {
    pub revision: Option<u64>,
    pub record: T,
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Replacement<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let headers = request.headers().clone();
        let Body(mut value) = Body::<serde_json::Value>::from_request(request, state).await?;
        let revision = match value.as_object_mut().and_then(|o| o.remove("revision")) {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| {
                Problem::bad_request(
                    "Invalid body",
                    format!("revision: expected the whole number GET gave, got {v}"),
                )
                .at("revision")
            })?),
        };
        let bytes = serde_json::to_vec(&value).map_err(Problem::internal)?;
        let record = json_body(&headers, &bytes)?;
        Ok(Replacement { revision, record })
    }
}

impl<T: JsonSchema> OperationInput for Replacement<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        <Json<T> as OperationInput>::operation_input(ctx, operation);
    }
}

/// `body` as `T` when `headers` say it is JSON.
pub(crate) fn json_body<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, Problem> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported media type",
            "send the body as application/json",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let text = inner.to_string();
        // serde names the field in "unknown field `x`" and "missing field `x`".
        let named = text
            .split('`')
            .nth(1)
            .filter(|_| text.contains(" field `"))
            .map(str::to_owned);
        let field = match (path.as_str(), named) {
            (".", Some(f)) | ("", Some(f)) => Some(f),
            (".", None) | ("", None) => None,
            (p, Some(f)) if text.contains("missing field") => Some(format!("{p}.{f}")),
            (p, _) => Some(p.to_owned()),
        };
        let mut p = Problem::bad_request("Invalid body", text);
        p.field = field;
        p
    })
}

/// A JSON body with the record's revision as ETag.
pub(crate) struct Tagged<T>(pub u64, pub T);

impl<T: Serialize> IntoResponse for Tagged<T> {
    fn into_response(self) -> Response {
        with_etag(Json(self.1).into_response(), self.0)
    }
}

/// A JSON body serialized already (documented as `T`), with the record's
/// revision as ETag.
pub(crate) struct TaggedJson<T>(u64, Vec<u8>, std::marker::PhantomData<T>);

impl<T> TaggedJson<T> {
    pub(crate) fn new(revision: u64, json: Vec<u8>) -> TaggedJson<T> {
        TaggedJson(revision, json, std::marker::PhantomData)
    }
}

impl<T> IntoResponse for TaggedJson<T> {
    fn into_response(self) -> Response {
        let response = (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            self.1,
        )
            .into_response();
        with_etag(response, self.0)
    }
}

/// 201 Created: the new record's place and revision.
pub(crate) struct Created<T> {
    pub location: String,
    pub revision: Option<u64>,
    pub body: T,
}

impl<T: Serialize> IntoResponse for Created<T> {
    fn into_response(self) -> Response {
        let mut response = (StatusCode::CREATED, Json(self.body)).into_response();
        if let Ok(v) = HeaderValue::from_str(&self.location) {
            response.headers_mut().insert(header::LOCATION, v);
        }
        match self.revision {
            Some(rev) => with_etag(response, rev),
            None => response,
        }
    }
}

pub(crate) fn with_etag(mut response: Response, revision: u64) -> Response {
    if let Ok(v) = HeaderValue::from_str(&format!("\"{revision}\"")) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

/// The revision an `If-Match` header names; `None` without the header.
pub(crate) fn if_match(headers: &HeaderMap) -> Result<Option<u64>, Problem> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("");
    text.trim()
        .trim_start_matches("W/")
        .trim_matches('"')
        .parse()
        .map(Some)
        .map_err(|_| {
            Problem::bad_request(
                "Invalid If-Match",
                format!("If-Match {text:?} is not an ETag this API gave"),
            )
            .at("If-Match")
        })
}

/// As [`if_match`], but the header must be there (428 otherwise).
pub(crate) fn required_if_match(headers: &HeaderMap, what: &str) -> Result<u64, Problem> {
    if_match(headers)?.ok_or_else(|| {
        Problem::new(
            StatusCode::PRECONDITION_REQUIRED,
            "If-Match required",
            format!(
                "send the ETag of the {what} you read as If-Match, so that changes made meanwhile are not overwritten"
            ),
        )
    })
}

/// The query string as `T`; 400 naming the parameter that is wrong.
pub(crate) struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(Query)
            .map_err(|e| {
                let field = e.path().to_string();
                let text = e.into_inner().to_string();
                // serde names the parameter in "unknown field `x`".
                let named = text
                    .split('`')
                    .nth(1)
                    .filter(|_| text.contains(" field `"))
                    .map(str::to_owned);
                let p = Problem::bad_request("Invalid query", text);
                match (field.as_str(), named) {
                    (".", Some(f)) => p.at(f),
                    (".", None) => p,
                    (f, _) => p.at(f),
                }
            })
    }
}

impl<T: JsonSchema> OperationInput for Query<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        <axum::extract::Query<T> as OperationInput>::operation_input(ctx, operation);
    }
}

/// The path parameters as `T`; 400 when they cannot be read.
pub(crate) struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e| Problem::bad_request("Invalid path", e.body_text()))
    }
}

impl<T: JsonSchema> OperationInput for Path<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        <axum::extract::Path<T> as OperationInput>::operation_input(ctx, operation);
    }
}

/// A multipart/form-data body; 415 for another content type.
pub(crate) struct Form(pub axum::extract::Multipart);

impl<S: Send + Sync> FromRequest<S> for Form {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Multipart::from_request(request, state)
            .await
            .map(Form)
            .map_err(|e| {
                Problem::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "Unsupported media type",
                    format!("send the files as multipart/form-data: {}", e.body_text()),
                )
            })
    }
}

impl OperationInput for Form {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        <axum::extract::Multipart as OperationInput>::operation_input(ctx, operation);
    }
}

/// 202 Accepted: the work goes on in the background; `location` says where
/// to follow it.
pub(crate) struct Accepted<T> {
    pub location: Option<String>,
    pub body: T,
}

impl<T: Serialize> IntoResponse for Accepted<T> {
    fn into_response(self) -> Response {
        let mut response = (StatusCode::ACCEPTED, Json(self.body)).into_response();
        if let Some(v) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            response.headers_mut().insert(header::LOCATION, v);
        }
        response
    }
}

/// 201 when something new was made, 200 when it was changed.
pub(crate) struct Saved<T> {
    pub created: bool,
    pub body: T,
}

impl<T: Serialize> IntoResponse for Saved<T> {
    fn into_response(self) -> Response {
        let status = if self.created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        (status, Json(self.body)).into_response()
    }
}

/// A page size given as `limit`: `default` when absent, 400 outside 1..=`max`.
pub(crate) fn page_limit(limit: Option<u32>, default: usize, max: usize) -> Result<usize, Problem> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=max as u32).contains(&n) => Ok(n as usize),
        Some(n) => Err(Problem::bad_request(
            "Invalid limit",
            format!("limit {n} is not within 1..={max}"),
        )
        .at("limit")),
    }
}

/// Documents a JSON answer of type `T` under the given statuses.
macro_rules! json_answer {
    ($ty:ident, $($code:literal),+) => {
        impl<T: JsonSchema> OperationOutput for $ty<T> {
            type Inner = T;

            fn operation_response(
                ctx: &mut GenContext,
                operation: &mut Operation,
            ) -> Option<DocResponse> {
                <Json<T> as OperationOutput>::operation_response(ctx, operation)
            }

            fn inferred_responses(
                ctx: &mut GenContext,
                operation: &mut Operation,
            ) -> Vec<(Option<DocStatus>, DocResponse)> {
                Self::operation_response(ctx, operation)
                    .map(|r| vec![$((Some(DocStatus::Code($code)), r.clone())),+])
                    .unwrap_or_default()
            }
        }
    };
}

json_answer!(Tagged, 200);
json_answer!(TaggedJson, 200);
json_answer!(Created, 201);
json_answer!(Accepted, 202);
json_answer!(Saved, 200, 201);

/// 200 with a CSV file (`text/csv`), offered for download as `file`.
pub(crate) struct Csv {
    pub file: String,
    pub body: axum::body::Body,
}

impl IntoResponse for Csv {
    fn into_response(self) -> Response {
        let disposition = format!("attachment; filename=\"{}\"", self.file.replace('"', "_"));
        (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (header::CONTENT_DISPOSITION, disposition),
            ],
            self.body,
        )
            .into_response()
    }
}

impl OperationOutput for Csv {
    type Inner = String;

    fn operation_response(_: &mut GenContext, _: &mut Operation) -> Option<DocResponse> {
        Some(DocResponse {
            description: "CSV, with a header row".into(),
            content: [(
                "text/csv".to_owned(),
                MediaType {
                    schema: Some(SchemaObject {
                        json_schema: json!({"type": "string"}).try_into().expect("a schema"),
                        external_docs: None,
                        example: None,
                    }),
                    ..Default::default()
                },
            )]
            .into(),
            ..Default::default()
        })
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        operation: &mut Operation,
    ) -> Vec<(Option<DocStatus>, DocResponse)> {
        Self::operation_response(ctx, operation)
            .map(|r| vec![(Some(DocStatus::Code(200)), r)])
            .unwrap_or_default()
    }
}

/// 204 with a header set (signing out clears the session cookie).
pub(crate) struct NoContentWith(pub header::HeaderName, pub HeaderValue);

impl IntoResponse for NoContentWith {
    fn into_response(self) -> Response {
        (StatusCode::NO_CONTENT, [(self.0, self.1)]).into_response()
    }
}

impl OperationOutput for NoContentWith {
    type Inner = ();

    fn operation_response(ctx: &mut GenContext, operation: &mut Operation) -> Option<DocResponse> {
        <axum::response::NoContent as OperationOutput>::operation_response(ctx, operation)
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        operation: &mut Operation,
    ) -> Vec<(Option<DocStatus>, DocResponse)> {
        <axum::response::NoContent as OperationOutput>::inferred_responses(ctx, operation)
    }
}
