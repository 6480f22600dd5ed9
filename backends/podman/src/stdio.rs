//! The stdio of stdio containers, through berth's relay on a Unix socket.
//!
//! conmon closes a container's stdin as soon as an attach connection to it
//! ends (Podman never passes it `--leave-stdin-open`), so a stdio server
//! attached through Podman's API would read end-of-file when berth
//! restarts. Instead, stdio containers run `relay/main.rs` (built by
//! `build.rs`, embedded here, installed as [`Relays::binary`]) in front of
//! the image's command: it holds the server's stdin and stdout and serves
//! them on a Unix socket in a directory of the host bind-mounted into the
//! container. [`Relays::connect`] connects there, as often as needed: a
//! restarted berth connects again and the server never notices.
//!
//! One holder at a time per container: a [`StdioHandle`] carries a lease
//! that its two halves give back when both are dropped
//! ([`StdioHandle::guarded`]).

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use berth_runtime_api::{RuntimeError, StdioHandle, WorkloadName, WorkloadSpec};
use tokio::net::UnixStream;

use crate::PodmanBackend;
use crate::container::{ImageCommand, RelaySetup};

/// The relay executable, built for the target by `build.rs`.
const RELAY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/berth-stdio-relay"));

/// Where the relay is mounted in a container (read-only).
pub(crate) const RELAY_IN_CONTAINER: &str = "/.berth/relay";
/// Where the workload's socket directory is mounted in a container.
pub(crate) const IO_DIR_IN_CONTAINER: &str = "/.berth/io";
/// The relay's socket, as the container sees it.
pub(crate) const SOCKET_IN_CONTAINER: &str = "/.berth/io/stdio.sock";
/// The relay's flag, in place of a socket, for a server whose stdio it
/// does not hold: it hands the server its secrets and becomes it.
pub(crate) const EXEC_FLAG: &str = "--exec";
/// The socket's file name in the workload's directory.
const SOCKET_NAME: &str = "stdio.sock";
/// The longest Unix socket path Linux takes (`sun_path` less its NUL).
const MAX_SOCKET_PATH: usize = 107;

impl PodmanBackend {
    /// How a container of `spec` (its image resolved) runs the relay: the
    /// image's command line, and for a stdio server a fresh socket
    /// directory.
    pub(crate) async fn relay_setup(
        &self,
        spec: &WorkloadSpec,
        stdio: bool,
    ) -> Result<RelaySetup, RuntimeError> {
        let name = &spec.name;
        let relays = self.relays.as_ref().ok_or_else(no_stdio_dir)?;
        let image = self
            .libpod
            .get::<ImageCommand>(&format!("/libpod/images/{}/json", spec.image))
            .await
            .map_err(|err| self.fail(name, "reading the image's command for", err))?;
        let command = image.command_line(&spec.args);
        if command.is_empty() {
            return Err(RuntimeError::InvalidSpec(format!(
                "image `{}` has neither an entrypoint nor a command, and the workload gives no arguments",
                spec.image
            )));
        }
        let io_dir = if stdio {
            let dir = relays.prepare(name).map_err(|err| {
                RuntimeError::backend(format!("preparing the stdio relay of `{name}`"), err)
            })?;
            Some(dir.to_string_lossy().into_owned())
        } else {
            None
        };
        Ok(RelaySetup {
            binary: relays.binary().to_string_lossy().into_owned(),
            io_dir,
            command,
        })
    }
}

/// Why a workload with secrets is refused by a backend without a stdio
/// directory (the relay, which hands a server its secrets, lives there).
pub(crate) fn no_relay_for_secrets() -> RuntimeError {
    RuntimeError::InvalidSpec(
        "this podman backend has no directory for its relay (PodmanConfig::stdio_dir), which hands a server its secrets, so it cannot run workloads with secret environment variables".to_owned(),
    )
}

/// Why a stdio workload is refused by a backend without a stdio directory.
pub(crate) fn no_stdio_dir() -> RuntimeError {
    RuntimeError::InvalidSpec(
        "this podman backend has no directory for stdio relays (PodmanConfig::stdio_dir), so it cannot run stdio workloads".to_owned(),
    )
}

/// The relay binary and the per-workload socket directories under one
/// directory of berth's.
pub(crate) struct Relays {
    dir: PathBuf,
    /// Ids of the containers whose stdio is lent out.
    leases: Arc<Mutex<HashSet<String>>>,
}

impl Relays {
    /// Makes `dir` (private to berth) and installs the relay binary in it,
    /// unless the same binary is there already.
    pub(crate) fn new(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        let binary = dir.join("berth-stdio-relay");
        if std::fs::read(&binary).ok().as_deref() != Some(RELAY) {
            let tmp = dir.join(format!(".berth-stdio-relay.{}", std::process::id()));
            std::fs::write(&tmp, RELAY)?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
            std::fs::rename(&tmp, &binary)?;
        }
        Ok(Self {
            dir: dir.to_owned(),
            leases: Arc::default(),
        })
    }

    /// The relay executable on the host.
    pub(crate) fn binary(&self) -> PathBuf {
        self.dir.join("berth-stdio-relay")
    }

    /// The socket directory of `name` on the host.
    pub(crate) fn io_dir(&self, name: &WorkloadName) -> PathBuf {
        self.dir.join(name.as_str())
    }

    fn socket(&self, name: &WorkloadName) -> PathBuf {
        self.io_dir(name).join(SOCKET_NAME)
    }

    /// Makes the socket directory of `name` for a new container: writable
    /// by whatever user the container runs as (its parent is private to
    /// berth), without a socket left by an earlier one.
    pub(crate) fn prepare(&self, name: &WorkloadName) -> io::Result<PathBuf> {
        let socket = self.socket(name);
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the relay socket path {} is longer than Unix sockets allow ({MAX_SOCKET_PATH} bytes); use a shorter state directory or workload name",
                    socket.display()
                ),
            ));
        }
        let dir = self.io_dir(name);
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))?;
        match std::fs::remove_file(&socket) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
            _ => {}
        }
        Ok(dir)
    }

    /// Removes the socket directory of `name`.
    pub(crate) fn remove(&self, name: &WorkloadName) -> io::Result<()> {
        match std::fs::remove_dir_all(self.io_dir(name)) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.leases.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Connects to the relay of container `id` of `name` and leases its
    /// stdio: `Ok(None)` when nothing listens there (yet), an error of kind
    /// `AddrInUse` when the stdio is lent out already.
    pub(crate) async fn connect(
        &self,
        name: &WorkloadName,
        id: &str,
    ) -> io::Result<Option<StdioHandle>> {
        // Reserved before connecting: a connection replaces the relay's
        // current client.
        let lease = {
            let mut leases = self.lock();
            if !leases.insert(id.to_owned()) {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "the stdio of this container is lent out",
                ));
            }
            Lease {
                leases: self.leases.clone(),
                id: id.to_owned(),
            }
        };
        let stream = match UnixStream::connect(self.socket(name)).await {
            Ok(stream) => stream,
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Ok(None);
            }
            Err(err) => return Err(err),
        };
        let (read, write) = stream.into_split();
        Ok(Some(StdioHandle::guarded(write, read, lease)))
    }
}

/// A lent-out stdio; given back when dropped.
struct Lease {
    leases: Arc<Mutex<HashSet<String>>>,
    id: String,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.leases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    //! The relay binary itself, on the host, in front of `cat`.

    use std::process::{Child, Command};
    use std::time::Duration;

    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    use super::*;

    struct Relay {
        child: Child,
        socket: PathBuf,
        _dir: tempfile::TempDir,
    }

    impl Drop for Relay {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn relay(program: &[&str]) -> Relay {
        let dir = tempfile::tempdir().expect("tempdir");
        let relays = Relays::new(dir.path()).expect("install");
        let socket = dir.path().join("s.sock");
        let child = Command::new(relays.binary())
            .arg(&socket)
            .arg("--")
            .args(program)
            .spawn()
            .expect("run the relay");
        Relay {
            child,
            socket,
            _dir: dir,
        }
    }

    async fn connect(socket: &Path) -> UnixStream {
        for _ in 0..500 {
            if let Ok(s) = UnixStream::connect(socket).await {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the relay does not listen on {}", socket.display());
    }

    async fn line(reader: &mut BufReader<tokio::net::unix::OwnedReadHalf>) -> String {
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line))
            .await
            .expect("a line in time")
            .expect("read");
        line
    }

    #[tokio::test]
    async fn whole_lines_to_one_client_at_a_time() {
        let r = relay(&["cat"]);
        let (read, mut write) = connect(&r.socket).await.into_split();
        let mut read = BufReader::new(read);
        write.write_all(b"one\n").await.unwrap();
        assert_eq!(line(&mut read).await, "one\n");
        // A torn line dies with its client.
        write.write_all(b"tor").await.unwrap();
        drop(write);
        drop(read);

        let (read, mut write) = connect(&r.socket).await.into_split();
        let mut read = BufReader::new(read);
        write.write_all(b"two\n").await.unwrap();
        assert_eq!(line(&mut read).await, "two\n", "no torn prefix");

        // A new client replaces the current one, whose stream ends.
        let (read2, mut write2) = connect(&r.socket).await.into_split();
        let mut read2 = BufReader::new(read2);
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), read.read_to_end(&mut rest))
            .await
            .expect("the old client is let go")
            .unwrap();
        assert!(rest.is_empty(), "{rest:?}");
        write2.write_all(b"three\n").await.unwrap();
        assert_eq!(line(&mut read2).await, "three\n");
        drop(write);
    }

    #[tokio::test]
    async fn output_waits_for_a_client_and_the_exit_status_is_the_servers() {
        // The server writes before anyone connects, then exits 7.
        let mut r = relay(&["sh", "-c", "echo early; read x; echo \"got $x\"; exit 7"]);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (read, mut write) = connect(&r.socket).await.into_split();
        let mut read = BufReader::new(read);
        assert_eq!(line(&mut read).await, "early\n", "kept until a client came");
        write.write_all(b"hi\n").await.unwrap();
        assert_eq!(line(&mut read).await, "got hi\n");
        let status = r.child.wait().expect("wait");
        assert_eq!(status.code(), Some(7));
    }

    #[tokio::test]
    async fn stop_signals_reach_the_server() {
        // The server reports SIGTERM on its way out.
        let mut r = relay(&[
            "sh",
            "-c",
            "trap 'echo term; exit 3' TERM; echo ready; while :; do sleep 0.05; done",
        ]);
        let (read, _write) = connect(&r.socket).await.into_split();
        let mut read = BufReader::new(read);
        assert_eq!(line(&mut read).await, "ready\n");
        let pid = r.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        assert_eq!(line(&mut read).await, "term\n");
        assert_eq!(r.child.wait().expect("wait").code(), Some(3));
    }
}
