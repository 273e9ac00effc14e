//! Bulk import by upload, run as a background job: the CSV files are
//! streamed to disk, checked and imported as `crm import` does, with the
//! progress readable while it runs and a report (and the rejected rows,
//! with their problems) when it ends.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Extension;
use axum::Json;
use axum::extract::State;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::problem::{Accepted, Csv, Form, Path, Problem, Query};
use super::{AppState, Caller, require};
use app::tokens::Role;

/// Largest upload of CSV files.
pub(crate) const MAX_UPLOAD: usize = 4 << 30;

const IMPORTERS: &[Role] = &[Role::Integrator];

/// What an import job is doing or did.
#[derive(Clone, Serialize, JsonSchema)]
pub(crate) struct JobView {
    pub id: String,
    /// running, done or failed.
    pub state: String,
    /// What it is doing: "checking customers.csv", "writing transactions.csv".
    pub stage: String,
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub rows_done: u64,
    pub files: Vec<FileView>,
    /// Why it failed: the problems of the rows (file:line: column: reason),
    /// or what else went wrong. Nothing was changed when the check failed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Who started it.
    pub by: String,
}

/// What an import did with one file.
#[derive(Clone, Serialize, JsonSchema)]
pub(crate) struct FileView {
    pub file: String,
    pub rows: u64,
    pub added: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub rejected: u64,
    /// Where the rejected rows and their problems can be downloaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected_rows: Option<String>,
}

pub(crate) struct Job {
    view: Mutex<JobView>,
    bytes_done: AtomicU64,
    rows_done: AtomicU64,
    dir: tempfile::TempDir,
    rejected: Mutex<HashMap<String, PathBuf>>,
}

impl Job {
    fn snapshot(&self) -> JobView {
        let mut v = self.view.lock().expect("job lock").clone();
        v.bytes_done = self.bytes_done.load(Ordering::Relaxed);
        v.rows_done = self.rows_done.load(Ordering::Relaxed);
        v
    }
}

impl transfer::Progress for Job {
    fn stage(&self, label: &str, total_bytes: u64) {
        let mut v = self.view.lock().expect("job lock");
        v.stage = label.to_owned();
        v.bytes_total = total_bytes;
        self.bytes_done.store(0, Ordering::Relaxed);
    }

    fn advance(&self, bytes_done: u64, rows_done: u64) {
        self.bytes_done.store(bytes_done, Ordering::Relaxed);
        self.rows_done.store(rows_done, Ordering::Relaxed);
    }

    fn stage_done(&self) {}
}

/// The import jobs of this process, by id.
#[derive(Default)]
pub(crate) struct Jobs {
    next: AtomicU64,
    jobs: Mutex<HashMap<String, Arc<Job>>>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImportParams {
    /// Import the valid rows and set the invalid ones aside (downloadable
    /// with their problems); without it, one invalid row refuses the whole
    /// import and nothing changes.
    pub skip_invalid: Option<bool>,
}

const FILES: [&str; 5] = [
    "customers.csv",
    "products.csv",
    "campaigns.csv",
    "transactions.csv",
    "interactions.csv",
];

/// `POST /api/v1/imports`: multipart/form-data with one or more of
/// customers.csv, products.csv, campaigns.csv, transactions.csv and
/// interactions.csv (each part's file name, or its field name, says
/// which); starts the job and answers 202 with where to follow it.
pub(crate) async fn start(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<ImportParams>,
    Form(mut multipart): Form,
) -> Result<Accepted<JobView>, Problem> {
    require(&caller, IMPORTERS, "import")?;
    let dir = tempfile::tempdir().map_err(Problem::internal)?;
    let mut names = Vec::new();
    let bad = |detail: String| Problem::bad_request("Invalid upload", detail);
    let unreadable = |e: axum::extract::multipart::MultipartError| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            Problem::new(
                e.status(),
                "Upload too large",
                format!("the upload is over the limit of {MAX_UPLOAD} bytes"),
            )
        } else {
            bad(e.body_text())
        }
    };
    while let Some(mut field) = multipart.next_field().await.map_err(unreadable)? {
        let name = field
            .file_name()
            .or(field.name())
            .unwrap_or_default()
            .rsplit(['/', '\\'])
            .next()
            .unwrap_or_default()
            .to_owned();
        if !FILES.contains(&name.as_str()) {
            return Err(bad(format!("'{name}' is not one of {}", FILES.join(", "))).at(name));
        }
        if names.contains(&name) {
            return Err(bad(format!("{name} is given twice")).at(name));
        }
        let path = dir.path().join(&name);
        let mut file = tokio::fs::File::create(&path)
            .await
            .map_err(Problem::internal)?;
        while let Some(chunk) = field.chunk().await.map_err(unreadable)? {
            tokio::io::AsyncWriteExt::write_all(&mut file, &chunk)
                .await
                .map_err(Problem::internal)?;
        }
        tokio::io::AsyncWriteExt::flush(&mut file)
            .await
            .map_err(Problem::internal)?;
        names.push(name);
    }
    if names.is_empty() {
        return Err(bad(format!("send one or more of {}", FILES.join(", "))));
    }
    let id = (state.jobs.next.fetch_add(1, Ordering::Relaxed) + 1).to_string();
    let job = Arc::new(Job {
        view: Mutex::new(JobView {
            id: id.clone(),
            state: "running".into(),
            stage: "queued".into(),
            bytes_done: 0,
            bytes_total: 0,
            rows_done: 0,
            files: Vec::new(),
            problems: Vec::new(),
            error: None,
            by: caller.actor().0,
        }),
        bytes_done: AtomicU64::new(0),
        rows_done: AtomicU64::new(0),
        dir,
        rejected: Mutex::new(HashMap::new()),
    });
    state
        .jobs
        .jobs
        .lock()
        .expect("jobs lock")
        .insert(id.clone(), Arc::clone(&job));
    let skip_invalid = params.skip_invalid.unwrap_or(false);
    let state2 = Arc::clone(&state);
    let job2 = Arc::clone(&job);
    std::thread::Builder::new()
        .name(format!("crm-import-{id}"))
        .spawn(move || run(&state2, &job2, skip_invalid, &caller))
        .map_err(Problem::internal)?;
    Ok(Accepted {
        location: Some(format!("/api/v1/imports/{id}")),
        body: job.snapshot(),
    })
}

/// Runs one import job to its end.
fn run(state: &Arc<AppState>, job: &Job, skip_invalid: bool, caller: &Caller) {
    // One import at a time: the second waits for the first.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let ahead = state.store_ahead();
    let id = job.view.lock().expect("job lock").id.clone();
    let result = app::imports::import(
        &*state.store,
        &state.registry,
        job.dir.path(),
        skip_invalid,
        &caller.actor(),
        &format!("job {id}"),
        job,
    );
    let mut view = job.view.lock().expect("job lock");
    match result {
        Ok(report) => {
            let mut rejected = job.rejected.lock().expect("job lock");
            for f in &report.files {
                let file = f.kind.file_name().to_owned();
                let link = f.rejected_file.as_ref().map(|path| {
                    rejected.insert(file.clone(), path.clone());
                    format!("/api/v1/imports/{}/rejected/{file}", view.id)
                });
                view.files.push(FileView {
                    file,
                    rows: f.rows,
                    added: f.added,
                    updated: f.updated,
                    unchanged: f.unchanged,
                    rejected: f.rejected,
                    rejected_rows: link,
                });
            }
            view.state = "done".into();
            view.stage = "done".into();
        }
        Err(transfer::ImportError::Invalid {
            problems,
            total,
            rows,
        }) => {
            view.state = "failed".into();
            view.stage = "refused".into();
            view.error = Some(format!(
                "the import was refused and nothing was changed: {total} problems in {rows} rows (import with skip_invalid=true to import the valid rows)"
            ));
            view.problems = problems;
        }
        Err(e) => {
            view.state = "failed".into();
            view.stage = "failed".into();
            view.error = Some(e.to_string());
        }
    }
    drop(view);
    state.crm.catch_up();
    drop(ahead);
}

/// `GET /api/v1/imports`: the jobs of this process, newest first.
pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<JobView>>, Problem> {
    require(&caller, IMPORTERS, "read imports")?;
    let jobs = state.jobs.jobs.lock().expect("jobs lock");
    let mut all: Vec<JobView> = jobs.values().map(|j| j.snapshot()).collect();
    all.sort_by_key(|j| std::cmp::Reverse(j.id.parse::<u64>().unwrap_or(0)));
    Ok(Json(all))
}

#[derive(Deserialize, JsonSchema)]
pub(crate) struct JobPath {
    pub id: String,
}

fn job(state: &AppState, id: &str) -> Result<Arc<Job>, Problem> {
    state
        .jobs
        .jobs
        .lock()
        .expect("jobs lock")
        .get(id)
        .cloned()
        .ok_or_else(|| Problem::not_found(format!("no import job '{id}'")))
}

/// `GET /api/v1/imports/{id}`: the job's progress, then its report.
pub(crate) async fn get(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(JobPath { id }): Path<JobPath>,
) -> Result<Json<JobView>, Problem> {
    require(&caller, IMPORTERS, "read imports")?;
    Ok(Json(job(&state, &id)?.snapshot()))
}

#[derive(Deserialize, JsonSchema)]
pub(crate) struct RejectedPath {
    pub id: String,
    /// customers.csv, products.csv, ...
    pub file: String,
}

/// `GET /api/v1/imports/{id}/rejected/{file}`: the rows set aside, with
/// their line numbers and problems, as CSV.
pub(crate) async fn rejected(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(RejectedPath { id, file }): Path<RejectedPath>,
) -> Result<Csv, Problem> {
    require(&caller, IMPORTERS, "read imports")?;
    let job = job(&state, &id)?;
    let path = job
        .rejected
        .lock()
        .expect("job lock")
        .get(&file)
        .cloned()
        .ok_or_else(|| Problem::not_found(format!("no rejected rows of {file} in job {id}")))?;
    let text = tokio::fs::read(&path).await.map_err(Problem::internal)?;
    Ok(Csv {
        file: file.replace(".csv", ".rejected.csv"),
        body: text.into(),
    })
}
