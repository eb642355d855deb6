//! Master strings and starting the executors they ask for.
//!
//! | master | executors |
//! | --- | --- |
//! | `local`, `local[*]`, `local[N]` | embedded, in this process |
//! | `local-cluster[E,C]` | E child processes of this binary, C cores each |
//! | `cluster`, `riffle://HOST:PORT` | external processes that register with the driver |

use crate::cluster::{Cluster, DriverServer};
use crate::error::DriverError;
use riffle_executor::rpc::v1::driver_service_server::DriverServiceServer;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where a context's tasks run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Master {
    /// In this process, with this many slots.
    Embedded {
        /// Task slots.
        slots: usize,
    },
    /// Child processes of this binary on this machine.
    LocalCluster {
        /// Number of executor processes.
        executors: usize,
        /// Cores (slots) of each.
        cores: usize,
    },
    /// External executors registering with a driver listening on `bind`.
    Cluster {
        /// The driver's listening address.
        bind: SocketAddr,
    },
}

/// The driver's address for `cluster` when none is given.
pub const DEFAULT_DRIVER_BIND: &str = "127.0.0.1:7077";

impl Master {
    /// Parses a master string.
    pub fn parse(master: &str) -> Result<Master, DriverError> {
        let bad = |why: &str| {
            DriverError::Config(format!(
                "unknown master {master:?} ({why}): expected local, local[*], local[N], local-cluster[E,C], cluster or riffle://HOST:PORT"
            ))
        };
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let positive = |s: &str| s.trim().parse::<usize>().ok().filter(|n| *n > 0);
        match master {
            "local" | "local[*]" => return Ok(Master::Embedded { slots: cores }),
            "cluster" => {
                return DEFAULT_DRIVER_BIND
                    .parse()
                    .map(|bind| Master::Cluster { bind })
                    .map_err(|_| bad("default bind"));
            }
            _ => {}
        }
        if let Some(rest) = master
            .strip_prefix("local-cluster[")
            .and_then(|r| r.strip_suffix(']'))
        {
            let (e, c) = rest
                .split_once(',')
                .ok_or_else(|| bad("local-cluster needs [E,C]"))?;
            return match (positive(e), positive(c)) {
                (Some(executors), Some(cores)) => Ok(Master::LocalCluster { executors, cores }),
                _ => Err(bad("E and C must be positive integers")),
            };
        }
        if let Some(rest) = master
            .strip_prefix("local[")
            .and_then(|r| r.strip_suffix(']'))
        {
            return positive(rest)
                .map(|slots| Master::Embedded { slots })
                .ok_or_else(|| bad("N must be a positive integer"));
        }
        if let Some(addr) = master.strip_prefix("riffle://") {
            use std::net::ToSocketAddrs;
            let bind = addr
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| bad("HOST:PORT does not resolve"))?;
            return Ok(Master::Cluster { bind });
        }
        Err(bad("not recognized"))
    }
}

/// Starts the driver's gRPC service on `listener`; it stops when the
/// returned sender is dropped or fires.
pub(crate) fn serve(
    runtime: &crate::runtime::IoRuntime,
    cluster: Arc<Cluster>,
    listener: tokio::net::TcpListener,
) -> Result<tokio::sync::oneshot::Sender<()>, DriverError> {
    let mut server =
        riffle_executor::rpc::server(cluster.settings.tls.as_ref()).map_err(DriverError::Config)?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let max = cluster.settings.max_message_bytes;
    let service = tonic::service::interceptor::InterceptedService::new(
        DriverServiceServer::new(DriverServer {
            cluster: cluster.clone(),
        })
        .max_decoding_message_size(max)
        .max_encoding_message_size(max),
        cluster.settings.auth.server(),
    );
    let incoming = futures::stream::unfold(listener, |listener| async move {
        let conn = listener.accept().await.map(|(s, _)| {
            let _ = s.set_nodelay(true);
            s
        });
        Some((conn, listener))
    });
    runtime.handle().spawn(async move {
        let result = server
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stop_rx.await;
            })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "driver service stopped");
        }
    });
    runtime
        .handle()
        .spawn(Cluster::monitor_heartbeats(Arc::downgrade(&cluster)));
    Ok(stop_tx)
}

/// Executor processes started by a `local-cluster` driver. Dropping this
/// kills them; they also exit by themselves when the driver process dies
/// (their stdin, a pipe from the driver, closes).
pub(crate) struct Children {
    children: Vec<Child>,
}

impl Children {
    /// Starts `count` executors of this very binary with `cores` each and
    /// `vars` (memory and TLS settings) in their environment.
    pub(crate) fn spawn(
        count: usize,
        cores: usize,
        driver_url: &str,
        secret: &riffle_executor::secret::Secret,
        vars: &[(&str, String)],
    ) -> Result<Children, DriverError> {
        let exe = std::env::current_exe().map_err(|e| {
            DriverError::Config(format!("cannot find this program's executable: {e}"))
        })?;
        let mut children = Children {
            children: Vec::new(),
        };
        for _ in 0..count {
            // Executors must not write to the driver's stdout (the job's
            // output): their stdout goes to the driver's stderr.
            let stdout: Stdio = {
                use std::os::fd::AsFd;
                std::io::stderr()
                    .as_fd()
                    .try_clone_to_owned()
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null())
            };
            #[allow(clippy::disallowed_methods)]
            let child = Command::new(&exe)
                .env("RIFFLE_ROLE", "executor")
                .env("RIFFLE_DRIVER", driver_url)
                .env("RIFFLE_CORES", cores.to_string())
                // In the environment, never on the command line: every
                // user of the machine can read a process's arguments.
                .env("RIFFLE_SECRET", secret.expose())
                .env_remove("RIFFLE_SECRET_FILE")
                .env("RIFFLE_EXIT_ON_STDIN_EOF", "1")
                .envs(vars.iter().map(|(k, v)| (*k, v)))
                .stdin(Stdio::piped())
                .stdout(stdout)
                .spawn()
                .map_err(|e| {
                    DriverError::Config(format!("cannot start executor {}: {e}", exe.display()))
                })?;
            children.children.push(child);
        }
        Ok(children)
    }

    /// An error if a child has already exited (it could not start).
    pub(crate) fn check_alive(&mut self) -> Result<(), DriverError> {
        for child in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(DriverError::Config(format!(
                    "executor process {} exited at start-up ({status}); does the program call riffle::init() first thing in main?",
                    child.id()
                )));
            }
        }
        Ok(())
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
        }
        for child in &mut self.children {
            let _ = child.wait();
        }
    }
}

/// Waits until at least `count` executors are registered, or fails after
/// `timeout` with `hint` (how to start one).
pub(crate) fn wait_for_executors(
    runtime: &crate::runtime::IoRuntime,
    cluster: &Cluster,
    count: usize,
    timeout: Duration,
    mut children: Option<&mut Children>,
    hint: &str,
) -> Result<(), DriverError> {
    let deadline = Instant::now() + timeout;
    let mut changes = cluster.subscribe();
    loop {
        let registered = cluster.executors().len();
        if registered >= count {
            return Ok(());
        }
        if let Some(children) = children.as_deref_mut() {
            children.check_alive()?;
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(DriverError::NoExecutors {
                waited: timeout,
                registered,
                wanted: count,
                hint: hint.to_string(),
            });
        }
        let step = (deadline - now).min(Duration::from_millis(200));
        let _ = runtime.block_on(async { tokio::time::timeout(step, changes.changed()).await });
    }
}
