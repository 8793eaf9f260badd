//! The threads jq programs are compiled and run on.
//!
//! jaq's parser, compiler and interpreter recurse, and a stack overflow aborts the
//! whole process, so jq never runs on the caller's thread (an async worker has 2 MiB of
//! stack): it runs on a few dedicated threads with [`THREAD_STACK_BYTES`] of stack,
//! which a metered run (see `jq.rs`) and the program size limit keep it within. There
//! are as many as the machine has cores (at least 2, at most 8), so converters cannot
//! take more than that from the server, and async callers await them without
//! blocking an executor thread.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, Sender, channel, sync_channel};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// Stack of each jq thread. Only the pages a run touches are used.
pub(crate) const THREAD_STACK_BYTES: usize = 64 * 1024 * 1024;

type Job = Box<dyn FnOnce() + Send>;

thread_local! {
    static ON_JQ_THREAD: Cell<bool> = const { Cell::new(false) };
}

static JOBS: OnceLock<Result<Sender<Job>, String>> = OnceLock::new();

/// Whether the current thread is a jq thread (where jq runs directly).
pub(crate) fn on_jq_thread() -> bool {
    ON_JQ_THREAD.with(Cell::get)
}

fn submit(job: Job) -> Result<(), String> {
    let jobs = JOBS.get_or_init(start).as_ref().map_err(Clone::clone)?;
    jobs.send(job)
        .map_err(|_| "the jq threads have stopped".to_string())
}

fn start() -> Result<Sender<Job>, String> {
    let (sender, receiver) = channel::<Job>();
    let receiver = Arc::new(Mutex::new(receiver));
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8));
    for i in 0..threads {
        let receiver = receiver.clone();
        std::thread::Builder::new()
            .name(format!("eventfold-jq-{i}"))
            .stack_size(THREAD_STACK_BYTES)
            .spawn(move || work(&receiver))
            .map_err(|e| format!("cannot start a jq thread: {e}"))?;
    }
    Ok(sender)
}

fn work(jobs: &Mutex<Receiver<Job>>) {
    ON_JQ_THREAD.with(|on| on.set(true));
    loop {
        let job = jobs.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = job else {
            return;
        };
        // A panic ends the job (its caller hears of it), not the thread.
        let _ = catch_unwind(AssertUnwindSafe(job));
    }
}

/// Runs `job` on a jq thread and waits for it, blocking the current thread (directly
/// when the current thread is one).
pub(crate) fn run_blocking<R: Send + 'static>(
    job: impl FnOnce() -> R + Send + 'static,
) -> Result<R, String> {
    if on_jq_thread() {
        return Ok(job());
    }
    let (answer, answered) = sync_channel(1);
    submit(Box::new(move || {
        let _ = answer.send(job());
    }))?;
    answered
        .recv()
        .map_err(|_| "the jq run panicked".to_string())
}

/// Runs `job` on a jq thread; the caller awaits it without blocking its own thread.
pub(crate) async fn run<R: Send + 'static>(
    job: impl FnOnce() -> R + Send + 'static,
) -> Result<R, String> {
    let (answer, answered) = tokio::sync::oneshot::channel();
    submit(Box::new(move || {
        let _ = answer.send(job());
    }))?;
    answered
        .await
        .map_err(|_| "the jq run panicked".to_string())
}
