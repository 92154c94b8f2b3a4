//! Fair CPU between guests and the rest of the server.
//!
//! A call starts on the caller's thread (most calls finish in microseconds, and moving them
//! would cost more than they do). The epoch callback counts how long a call has run; once it
//! has used its foreground slice ([`crate::Fairness::foreground_slice`]) it asks to move, and
//! [`Fair`] hands the call's future (wasmtime's call futures are `Send` and may be resumed on
//! any thread) to the background guest pool at its next yield. That pool's threads run at a
//! lower OS priority, so a guest that spins until its deadline competes for CPU only with
//! other long guests, and webhook intake, the API and short calls keep theirs.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::config::Fairness;

/// The background guest pool: a multi-threaded tokio runtime whose threads run at a lower OS
/// priority.
pub(crate) struct GuestPool {
    runtime: Option<tokio::runtime::Runtime>,
    handle: Handle,
}

impl GuestPool {
    /// Starts the pool's threads.
    pub(crate) fn new(fairness: &Fairness) -> std::io::Result<Self> {
        let (nice, idle) = (fairness.background_nice, fairness.background_idle);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(fairness.background_threads.max(1))
            .thread_name("stormhook-guest")
            .on_thread_start(move || lower_priority(nice, idle))
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        Ok(Self {
            runtime: Some(runtime),
            handle,
        })
    }

    /// Runs `call` here until it asks to move (`moved` set by the epoch callback), then on the
    /// pool. `None` when the pool dropped the call because it is shutting down.
    pub(crate) fn run<F>(&self, moved: Arc<AtomicBool>, call: F) -> Fair<F>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        Fair {
            state: State::Here(Box::pin(call)),
            moved,
            pool: self.handle.clone(),
        }
    }
}

impl Drop for GuestPool {
    /// Dropping a tokio runtime from async code panics; shut it down without waiting instead.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

enum State<F: Future> {
    Here(Pin<Box<F>>),
    There(JoinHandle<F::Output>),
    Done,
}

/// A call that runs on the caller's task until it asks to move, then on the guest pool.
pub(crate) struct Fair<F: Future> {
    state: State<F>,
    moved: Arc<AtomicBool>,
    pool: Handle,
}

impl<F> Future for Fair<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // `Fair` is `Unpin`: its future is boxed.
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Here(call) => match call.as_mut().poll(cx) {
                    Poll::Ready(out) => {
                        this.state = State::Done;
                        return Poll::Ready(Some(out));
                    }
                    Poll::Pending if this.moved.load(Ordering::Acquire) => {
                        let State::Here(call) = std::mem::replace(&mut this.state, State::Done)
                        else {
                            unreachable!("matched above")
                        };
                        this.state = State::There(this.pool.spawn(call));
                    }
                    Poll::Pending => return Poll::Pending,
                },
                State::There(task) => {
                    let out = std::task::ready!(Pin::new(task).poll(cx));
                    this.state = State::Done;
                    return Poll::Ready(match out {
                        Ok(out) => Some(out),
                        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                        Err(_) => None,
                    });
                }
                State::Done => return Poll::Pending,
            }
        }
    }
}

impl<F: Future> Drop for Fair<F> {
    /// A call abandoned by its caller (a timeout, a canceled execution) is stopped on the pool
    /// too.
    fn drop(&mut self) {
        if let State::There(task) = &self.state {
            task.abort();
        }
    }
}

/// Lowers the calling thread's scheduling priority (Linux; elsewhere nothing): `idle` puts
/// it in the `SCHED_IDLE` class (it runs only on CPU time no normal thread wants, and a
/// waking normal thread preempts it at once), and `nice` sets its nice value (which still
/// orders it among other idle-class threads). Threads it spawns later inherit both.
pub(crate) fn lower_priority(nice: i32, idle: bool) {
    #[cfg(target_os = "linux")]
    if idle {
        // SAFETY: `sched_setscheduler` reads the policy and the `sched_param` we pass by
        // reference, which lives for the call; thread id 0 means the calling thread.
        #[allow(unsafe_code)]
        let result = unsafe {
            let param = libc::sched_param { sched_priority: 0 };
            libc::sched_setscheduler(0, libc::SCHED_IDLE, &raw const param)
        };
        if result != 0 {
            tracing::warn!(
                error = %std::io::Error::last_os_error(),
                "cannot put a guest thread in the idle scheduling class; it keeps its nice value only"
            );
        }
    }
    if nice <= 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: `gettid` has no preconditions; `setpriority` reads its three integer
        // arguments only. On Linux, PRIO_PROCESS with a thread id changes that one thread.
        #[allow(unsafe_code)]
        let result = unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice)
        };
        if result != 0 {
            tracing::warn!(
                nice,
                error = %std::io::Error::last_os_error(),
                "cannot lower the priority of a guest thread; long guests compete with the server at normal priority"
            );
        }
    }
}
