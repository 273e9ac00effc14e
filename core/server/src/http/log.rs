//! Where `crm serve` writes its log lines: a shared buffer that a thread
//! of its own writes to stderr every 50 ms, and when the server stops.
//!
//! Every request logs a line. Handing each line to a writer thread over a
//! channel (as `tracing-appender` does) costs an allocation, waking that
//! thread, and a write call per line under load, because that thread
//! flushes whenever its queue is empty. Here a request copies its line
//! into the buffer and goes on; lines are written in batches. Nothing is
//! dropped: past `MAX_PENDING` bytes a request writes the batch itself.

use std::cell::RefCell;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

/// How long a line may wait in the buffer.
const EVERY: Duration = Duration::from_millis(50);
/// Buffered bytes beyond which the line's writer writes the batch out.
const MAX_PENDING: usize = 4 << 20;

struct Shared {
    pending: Mutex<Vec<u8>>,
    /// Held while a batch is taken and written, so batches keep their order.
    out: Mutex<Box<dyn Write + Send>>,
    /// Whether the writing thread runs (it started, and the guard is not
    /// dropped); without it, lines are written as they come.
    writing: AtomicBool,
    stop: AtomicBool,
    wake: Condvar,
}

impl Shared {
    fn write_out(&self) {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if !batch.is_empty() {
            // Nowhere to report a failed write of the log itself.
            let _ = out.write_all(&batch);
            let _ = out.flush();
        }
    }
}

/// The writer given to `tracing_subscriber::fmt().with_writer(..)`.
#[derive(Clone)]
pub(crate) struct LogBuffer {
    shared: Arc<Shared>,
}

/// Writes what is left and stops the writing thread when dropped.
pub struct LogGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl LogBuffer {
    /// A buffer written to `out` by a thread of its own, until the guard is
    /// dropped.
    pub(crate) fn new(out: Box<dyn Write + Send>) -> (LogBuffer, LogGuard) {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Vec::with_capacity(64 << 10)),
            out: Mutex::new(out),
            writing: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            wake: Condvar::new(),
        });
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("crm-log".into())
                .spawn(move || {
                    let idle = Mutex::new(());
                    let mut guard = idle.lock().unwrap_or_else(|e| e.into_inner());
                    while !shared.stop.load(Ordering::Acquire) {
                        guard = shared
                            .wake
                            .wait_timeout(guard, EVERY)
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                        shared.write_out();
                    }
                    shared.write_out();
                })
                .ok()
        };
        shared.writing.store(thread.is_some(), Ordering::Release);
        (
            LogBuffer {
                shared: Arc::clone(&shared),
            },
            LogGuard { shared, thread },
        )
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.shared.writing.store(false, Ordering::Release);
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake.notify_all();
        match self.thread.take() {
            Some(thread) => {
                let _ = thread.join();
            }
            None => self.shared.write_out(),
        }
    }
}

/// One event's writer: its line is copied into the buffer.
pub(crate) struct LogLine<'a>(&'a Shared);

impl Write for LogLine<'_> {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let full = {
            let mut pending = self.0.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending.extend_from_slice(line);
            pending.len() > MAX_PENDING
        };
        if full || !self.0.writing.load(Ordering::Acquire) {
            self.0.write_out();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The buffer of the process's log (set by the first `http::logging`
/// whose subscriber took effect), where request lines are written
/// directly; `None` before, or with colours on (a terminal), where they go
/// through `tracing` like every other line.
static REQUESTS: OnceLock<LogBuffer> = OnceLock::new();

impl LogBuffer {
    /// Request lines are written to this buffer directly from now on.
    pub(crate) fn take_requests(&self) {
        let _ = REQUESTS.set(self.clone());
    }
}

thread_local! {
    /// A thread's line being written, and the text of the second it last
    /// wrote (`2026-12-04T19:46:37`, the part of the time that changes once
    /// a second).
    static LINE: RefCell<(Vec<u8>, u64, [u8; 19])> = const { RefCell::new((Vec::new(), u64::MAX, [0; 19])) };
}

/// Logs a request answered: the line `tracing`'s formatter would write for
/// `info!(request_id, method, route, status, ms, "request")` in the
/// `server::http` module, without its machinery (a request's line was a
/// twentieth of the CPU time of a customer 360 through it).
pub(crate) fn request(id: &str, method: &str, route: &str, status: u16, elapsed: Duration) {
    if !tracing::enabled!(target: "server::http", tracing::Level::INFO) {
        return;
    }
    let micros = elapsed.as_micros() as u64;
    let Some(buffer) = REQUESTS.get() else {
        let ms = micros as f64 / 1000.0;
        tracing::info!(target: "server::http", request_id = %id, %method, route = %route, status, ms, "request");
        return;
    };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    LINE.with_borrow_mut(|(line, second, text)| {
        if *second != now.as_secs() {
            *second = now.as_secs();
            // `2026-12-04T19:46:37Z` without its `Z`; a year past 9999 has
            // no such text.
            if let Some(stamp) = model::Timestamp::from_seconds(now.as_secs() as i64).text() {
                text.copy_from_slice(&stamp[..19]);
            }
        }
        let mut n = itoa::Buffer::new();
        line.clear();
        line.extend_from_slice(text);
        line.push(b'.');
        let sub = now.subsec_micros();
        line.extend_from_slice(&[
            b'0' + (sub / 100_000) as u8,
            b'0' + (sub / 10_000 % 10) as u8,
            b'0' + (sub / 1_000 % 10) as u8,
            b'0' + (sub / 100 % 10) as u8,
            b'0' + (sub / 10 % 10) as u8,
            b'0' + (sub % 10) as u8,
        ]);
        line.extend_from_slice(b"Z  INFO server::http: request request_id=");
        line.extend_from_slice(id.as_bytes());
        line.extend_from_slice(b" method=");
        line.extend_from_slice(method.as_bytes());
        line.extend_from_slice(b" route=");
        line.extend_from_slice(route.as_bytes());
        line.extend_from_slice(b" status=");
        line.extend_from_slice(n.format(status).as_bytes());
        line.extend_from_slice(b" ms=");
        line.extend_from_slice(n.format(micros / 1000).as_bytes());
        let fraction = micros % 1000;
        line.extend_from_slice(&[
            b'.',
            b'0' + (fraction / 100) as u8,
            b'0' + (fraction / 10 % 10) as u8,
            b'0' + (fraction % 10) as u8,
            b'\n',
        ]);
        let _ = LogLine(&buffer.shared).write(line);
    });
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogLine<'a>;

    fn make_writer(&'a self) -> LogLine<'a> {
        LogLine(&self.shared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_written_in_order_within_the_interval_and_all_of_them_at_the_end() {
        let sink = Sink::default();
        let (buffer, guard) = LogBuffer::new(Box::new(sink.clone()));
        let line = |t: usize, i: usize| format!("{t} {i}\n");
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let buffer = buffer.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000 {
                        buffer
                            .make_writer()
                            .write_all(line(t, i).as_bytes())
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // The thread writes them within a few intervals, without a stop.
        let all: usize = (0..4)
            .flat_map(|t| (0..10_000).map(move |i| line(t, i).len()))
            .sum();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while sink.0.lock().unwrap().len() < all && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(sink.0.lock().unwrap().len(), all, "written without a stop");
        buffer.make_writer().write_all(b"last\n").unwrap();
        drop(guard);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 40_001);
        assert_eq!(lines.last(), Some(&"last"));
        for t in 0..4 {
            let mine: Vec<usize> = lines
                .iter()
                .filter_map(|l| l.strip_prefix(&format!("{t} ")))
                .map(|n| n.parse().unwrap())
                .collect();
            assert_eq!(
                mine,
                (0..10_000).collect::<Vec<_>>(),
                "thread {t}'s lines in order"
            );
        }
        // After the stop, lines still get out, at once.
        buffer.make_writer().write_all(b"after\n").unwrap();
        assert!(
            String::from_utf8(sink.0.lock().unwrap().clone())
                .unwrap()
                .ends_with("after\n")
        );
    }
}
