//! A TCP proxy a test controls, to take a server's database away and give it back: it accepts
//! on `127.0.0.1:<free port>` and forwards each connection to a target. [`Proxy::cut`] closes
//! every live connection and refuses new ones (the port is closed, so a connect fails at once,
//! as when the database is down); [`Proxy::hold`] closes every live connection and accepts new
//! ones without forwarding or answering anything (a black hole, as when the database's host is
//! unreachable); [`Proxy::restore`] forwards again on the same port.
//!
//! Include it with `#[path = "common/proxy.rs"] mod proxy;`. It runs on the test's tokio
//! runtime; dropping the proxy closes everything.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forwards.
    Open,
    /// The port is closed: new connections are refused.
    Refuse,
    /// New connections are accepted and held, nothing forwarded or answered.
    Hold,
}

/// A running proxy; stops on drop.
pub struct Proxy {
    addr: SocketAddr,
    mode: Arc<watch::Sender<Mode>>,
    accepted: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Starts forwarding `127.0.0.1:<free port>` to `target` (`host:port`).
    pub async fn start(target: &str) -> Self {
        let listener = bind("127.0.0.1:0".parse().unwrap()).expect("binding the proxy");
        let addr = listener.local_addr().unwrap();
        let (mode, _) = watch::channel(Mode::Open);
        let mode = Arc::new(mode);
        let accepted = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(accept_loop(
            listener,
            addr,
            target.to_owned(),
            mode.subscribe(),
            Arc::clone(&accepted),
        ));
        Self {
            addr,
            mode,
            accepted,
            task,
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every live connection and refuses new ones until [`Proxy::restore`].
    pub fn cut(&self) {
        self.mode.send_replace(Mode::Refuse);
    }

    /// Closes every live connection and holds new ones (accepted, never answered) until
    /// [`Proxy::restore`], which closes them.
    pub fn hold(&self) {
        self.mode.send_replace(Mode::Hold);
    }

    /// Forwards again.
    pub fn restore(&self) {
        self.mode.send_replace(Mode::Open);
    }

    /// How many connections it has accepted so far (held ones included).
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        // The connections' tasks end when the mode's sender is gone.
    }
}

/// A listener on `addr` with `SO_REUSEADDR`, so that the port can be bound again after a cut
/// while connections through it are in `TIME_WAIT`.
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    target: String,
    mut mode: watch::Receiver<Mode>,
    accepted: Arc<AtomicU64>,
) {
    let mut listener = Some(listener);
    loop {
        let now = *mode.borrow_and_update();
        match (now, listener.is_some()) {
            (Mode::Refuse, true) => {
                // Closing the port: connections waiting in the backlog are reset too.
                listener = None;
                continue;
            }
            (Mode::Refuse, false) => {
                if mode.changed().await.is_err() {
                    return;
                }
                continue;
            }
            (Mode::Open | Mode::Hold, false) => {
                match bind(addr) {
                    Ok(l) => listener = Some(l),
                    Err(e) => {
                        eprintln!("proxy: binding {addr} again failed ({e}); retrying");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                continue;
            }
            (Mode::Open | Mode::Hold, true) => {}
        }
        let l = listener.as_ref().expect("bound");
        tokio::select! {
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            conn = l.accept() => {
                let Ok((client, _)) = conn else { continue };
                accepted.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(connection(client, target.clone(), mode.clone(), now));
            }
        }
    }
}

/// One connection: forwarded while the mode stays `Open`; held, without a byte either way,
/// while it stays `Hold`. Returning drops (closes) both sides.
async fn connection(
    mut client: TcpStream,
    target: String,
    mut mode: watch::Receiver<Mode>,
    accepted_in: Mode,
) {
    let _ = client.set_nodelay(true);
    if accepted_in == Mode::Hold {
        let _ = mode.wait_for(|m| *m != Mode::Hold).await;
        return;
    }
    let upstream = tokio::select! {
        up = TcpStream::connect(&target) => up,
        _ = mode.wait_for(|m| *m != Mode::Open) => return,
    };
    let Ok(mut upstream) = upstream else { return };
    let _ = upstream.set_nodelay(true);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {}
        _ = mode.wait_for(|m| *m != Mode::Open) => {}
    }
}
