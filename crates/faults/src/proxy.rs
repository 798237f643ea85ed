//! A TCP proxy between robots and the server that the harness controls: it can cut every
//! connection at once (a reset, no close handshake: the robot's machine lost its network) and
//! stall the server-to-robot direction (a robot that stops reading).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct Proxy {
    pub addr: SocketAddr,
    stalled: watch::Sender<bool>,
    cuts: watch::Sender<u64>,
    /// Bytes passed from the server to robots.
    pub downstream_bytes: Arc<AtomicU64>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream`. `upstream_receive_buffer`
    /// shrinks the socket buffer towards the server, so that a stall is felt by the server
    /// after kilobytes rather than megabytes.
    pub async fn start(
        upstream: SocketAddr,
        upstream_receive_buffer: Option<u32>,
    ) -> Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stalled, _) = watch::channel(false);
        let (cuts, _) = watch::channel(0_u64);
        let downstream_bytes = Arc::new(AtomicU64::new(0));
        let accept = tokio::spawn(accept_loop(
            listener,
            upstream,
            upstream_receive_buffer,
            stalled.subscribe(),
            cuts.subscribe(),
            Arc::clone(&downstream_bytes),
        ));
        Ok(Proxy {
            addr,
            stalled,
            cuts,
            downstream_bytes,
            accept,
        })
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// Resets every open connection (both sides see a reset, nothing more is forwarded).
    pub fn cut(&self) {
        self.cuts.send_modify(|n| *n += 1);
    }

    /// Stops (or resumes) forwarding from the server to the robots. Nothing is read from the
    /// server while stalled.
    pub fn stall(&self, stalled: bool) {
        let _ = self.stalled.send(stalled);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    receive_buffer: Option<u32>,
    stalled: watch::Receiver<bool>,
    cuts: watch::Receiver<u64>,
    downstream_bytes: Arc<AtomicU64>,
) {
    while let Ok((client, _)) = listener.accept().await {
        let server = match connect(upstream, receive_buffer).await {
            Ok(server) => server,
            Err(_) => {
                let _ = client.set_zero_linger();
                continue;
            }
        };
        tokio::spawn(pump(
            client,
            server,
            stalled.clone(),
            cuts.clone(),
            Arc::clone(&downstream_bytes),
        ));
    }
}

async fn connect(upstream: SocketAddr, receive_buffer: Option<u32>) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(size) = receive_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    let stream = socket.connect(upstream).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Forwards both ways until either side closes or the proxy cuts.
async fn pump(
    client: TcpStream,
    server: TcpStream,
    mut stalled: watch::Receiver<bool>,
    mut cuts: watch::Receiver<u64>,
    downstream_bytes: Arc<AtomicU64>,
) {
    let _ = client.set_nodelay(true);
    cuts.mark_unchanged();
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = async {
        let mut buffer = vec![0_u8; 16 * 1024];
        loop {
            let n = match client_read.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if server_write.write_all(&buffer[..n]).await.is_err() {
                break;
            }
        }
    };
    let down = async {
        let mut buffer = vec![0_u8; 16 * 1024];
        loop {
            while *stalled.borrow_and_update() {
                if stalled.changed().await.is_err() {
                    return;
                }
            }
            let n = tokio::select! {
                read = server_read.read(&mut buffer) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                },
                _ = stalled.changed() => continue,
            };
            if client_write.write_all(&buffer[..n]).await.is_err() {
                break;
            }
            downstream_bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
    };
    let cut = tokio::select! {
        () = up => false,
        () = down => false,
        _ = cuts.changed() => true,
    };
    if let (Ok(client), Ok(server)) = (
        client_read.reunite(client_write),
        server_read.reunite(server_write),
    ) {
        if cut {
            // A reset rather than a close: neither side gets an orderly end.
            let _ = client.set_zero_linger();
            let _ = server.set_zero_linger();
        }
        drop(client);
        drop(server);
    }
}
