//! Progress of long commands on stderr: a bar with rows/s and ETA on a
//! terminal, a plain line every few seconds otherwise (logs, CI).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{HumanCount, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub(crate) enum Reporter {
    Bar(Mutex<Option<ProgressBar>>),
    Lines(Mutex<LineState>),
    Quiet,
}

pub(crate) struct LineState {
    label: String,
    total: u64,
    started: Instant,
    last: Instant,
    done: u64,
    rows: u64,
}

const LINE_EVERY: Duration = Duration::from_secs(2);

impl Reporter {
    pub(crate) fn for_stderr(quiet: bool) -> Reporter {
        if quiet {
            Reporter::Quiet
        } else if std::io::stderr().is_terminal() {
            Reporter::Bar(Mutex::new(None))
        } else {
            let now = Instant::now();
            Reporter::Lines(Mutex::new(LineState {
                label: String::new(),
                total: 0,
                started: now,
                last: now,
                done: 0,
                rows: 0,
            }))
        }
    }
}

impl transfer::Progress for Reporter {
    fn stage(&self, label: &str, total: u64) {
        match self {
            Reporter::Bar(bar) => {
                let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
                pb.set_style(
                    ProgressStyle::with_template(
                        "{msg:<28} [{bar:30}] {percent:>3}% {prefix} ({elapsed}, ETA {eta})",
                    )
                    .expect("the template is valid")
                    .progress_chars("=> "),
                );
                pb.set_message(label.to_owned());
                *bar.lock().expect("progress lock") = Some(pb);
            }
            Reporter::Lines(state) => {
                let mut s = state.lock().expect("progress lock");
                let now = Instant::now();
                *s = LineState {
                    label: label.to_owned(),
                    total,
                    started: now,
                    last: now,
                    done: 0,
                    rows: 0,
                };
                eprintln!("{label} ...");
            }
            Reporter::Quiet => {}
        }
    }

    fn advance(&self, done: u64, rows: u64) {
        match self {
            Reporter::Bar(bar) => {
                if let Some(pb) = bar.lock().expect("progress lock").as_ref() {
                    pb.set_position(done);
                    let secs = pb.elapsed().as_secs_f64().max(1e-3);
                    pb.set_prefix(format!(
                        "{} rows, {}/s",
                        HumanCount(rows),
                        HumanCount((rows as f64 / secs) as u64)
                    ));
                }
            }
            Reporter::Lines(state) => {
                let mut s = state.lock().expect("progress lock");
                s.done = done;
                s.rows = rows;
                if s.last.elapsed() >= LINE_EVERY {
                    s.last = Instant::now();
                    let secs = s.started.elapsed().as_secs_f64().max(1e-3);
                    let percent = if s.total == 0 {
                        100.0
                    } else {
                        100.0 * done as f64 / s.total as f64
                    };
                    let eta = if done == 0 {
                        0.0
                    } else {
                        secs * (s.total.saturating_sub(done)) as f64 / done as f64
                    };
                    eprintln!(
                        "{}: {percent:.0}%, {} rows, {}/s, about {eta:.0}s left",
                        s.label,
                        HumanCount(rows),
                        HumanCount((rows as f64 / secs) as u64)
                    );
                }
            }
            Reporter::Quiet => {}
        }
    }

    fn stage_done(&self) {
        match self {
            Reporter::Bar(bar) => {
                if let Some(pb) = bar.lock().expect("progress lock").take() {
                    pb.finish_and_clear();
                }
            }
            Reporter::Lines(state) => {
                let s = state.lock().expect("progress lock");
                let secs = s.started.elapsed().as_secs_f64();
                eprintln!(
                    "{}: done, {} rows in {secs:.1}s",
                    s.label,
                    HumanCount(s.rows)
                );
            }
            Reporter::Quiet => {}
        }
    }
}
