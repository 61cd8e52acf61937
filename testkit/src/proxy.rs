//! A TCP proxy on 127.0.0.1 between a client (the daemon) and an upstream port (the broker)
//! that the test can break: cut every live connection with an RST or a clean close, stall
//! them silently (a half-open path: nothing forwarded, nothing closed), or refuse new ones.
//! It runs on its own thread and tokio runtime, so blocking and async tests can both use it;
//! everything stops on drop.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How the proxy ends or breaks the live connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Forward bytes (the normal state of a connection).
    Run,
    /// Reset both sides (SO_LINGER 0, then close): the peers see `connection reset`.
    Reset,
    /// Close both sides cleanly (FIN).
    Close,
    /// Stop forwarding in both directions without closing anything: only keep-alive can
    /// tell the path is dead.
    Stall,
}

struct Shared {
    /// Accepted connections since start.
    accepted: AtomicU64,
    /// New connections are reset at once while false.
    accepting: watch::Sender<bool>,
    /// One control per live connection (dropped ones are pruned).
    conns: Mutex<Vec<watch::Sender<Cut>>>,
}

/// The proxy; see the module doc.
pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// Listen on a free port of 127.0.0.1 and forward to `127.0.0.1:upstream`.
    pub fn start(upstream: u16) -> Proxy {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("proxy bind");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let port = std_listener.local_addr().expect("proxy addr").port();
        let shared = Arc::new(Shared {
            accepted: AtomicU64::new(0),
            accepting: watch::Sender::new(true),
            conns: Mutex::new(Vec::new()),
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let sh = shared.clone();
        let upstream = SocketAddr::from(([127, 0, 0, 1], upstream));
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("proxy runtime");
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).expect("proxy listener");
                tokio::select! {
                    _ = accept_loop(listener, upstream, sh) => {}
                    _ = stopped => {}
                }
            });
            // Dropping the runtime drops every connection task and its sockets.
        });
        Proxy {
            port,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connections accepted since start (a reconnecting client adds one per attempt that
    /// got through).
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Break (or stall) every live connection as `how` says. Returns how many it hit.
    pub fn cut(&self, how: Cut) -> usize {
        let mut conns = self.shared.conns.lock().unwrap();
        conns.retain(|c| !c.is_closed());
        for c in conns.iter() {
            c.send_replace(how);
        }
        conns.len()
    }

    /// Close the connections that [`Cut::Stall`] holds (the client gave up on them long
    /// ago); the others run on. Returns how many it closed.
    pub fn release_stalled(&self) -> usize {
        let mut conns = self.shared.conns.lock().unwrap();
        conns.retain(|c| !c.is_closed());
        let stalled: Vec<_> = conns.iter().filter(|c| *c.borrow() == Cut::Stall).collect();
        for c in &stalled {
            c.send_replace(Cut::Close);
        }
        stalled.len()
    }

    /// Accept (true) or reset at once (false) new connections, as a broker that is down.
    pub fn set_accepting(&self, accepting: bool) {
        self.shared.accepting.send_replace(accepting);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if !*shared.accepting.borrow() {
            let _ = client.set_zero_linger();
            drop(client);
            continue;
        }
        let Ok(server) = TcpStream::connect(upstream).await else {
            let _ = client.set_zero_linger();
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = watch::channel(Cut::Run);
        shared.conns.lock().unwrap().push(tx);
        tokio::spawn(forward(client, server, rx));
    }
}

/// Copy bytes both ways until a side closes or the control says otherwise.
async fn forward(mut client: TcpStream, mut server: TcpStream, mut ctl: watch::Receiver<Cut>) {
    let mut up = vec![0u8; 16 * 1024];
    let mut down = vec![0u8; 16 * 1024];
    loop {
        let cut = *ctl.borrow_and_update();
        match cut {
            Cut::Run => {}
            Cut::Reset => {
                let _ = client.set_zero_linger();
                let _ = server.set_zero_linger();
                return;
            }
            Cut::Close => {
                let _ = client.shutdown().await;
                let _ = server.shutdown().await;
                return;
            }
            Cut::Stall => {
                // Hold both sockets open and read nothing until told otherwise (or dropped).
                if ctl.changed().await.is_err() {
                    return;
                }
                continue;
            }
        }
        tokio::select! {
            changed = ctl.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            n = client.read(&mut up) => match n {
                Ok(n) if n > 0 => {
                    if server.write_all(&up[..n]).await.is_err() {
                        return;
                    }
                }
                _ => return,
            },
            n = server.read(&mut down) => match n {
                Ok(n) if n > 0 => {
                    if client.write_all(&down[..n]).await.is_err() {
                        return;
                    }
                }
                _ => return,
            },
        }
    }
}
