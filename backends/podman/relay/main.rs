//! berth-stdio-relay: the stdio of an MCP server in a Podman container, on a
//! Unix socket that berth can connect to again after it restarted.
//!
//! Podman's conmon closes a container's stdin as soon as an attach
//! connection ends, so a stdio server attached by berth would read
//! end-of-file when berth restarts. Instead, berth mounts this program into
//! stdio containers and runs it in front of the image's own command:
//!
//! ```text
//! berth-stdio-relay [--env NAME=FILE]... SOCKET -- PROGRAM [ARGS...]
//! berth-stdio-relay [--env NAME=FILE]... --exec -- PROGRAM [ARGS...]
//! ```
//!
//! Each `--env NAME=FILE` sets the server's environment variable NAME to
//! the contents of FILE, exactly (a Podman secret mounted into the
//! container): that is how a workload's secrets reach it without their
//! values being part of the container's configuration, which `podman
//! inspect` shows. They win over the container's own environment. With
//! `--exec` the relay only does that and then becomes PROGRAM (an HTTP
//! server, whose stdio nobody needs); otherwise it relays stdio as follows.
//!
//! It starts PROGRAM with piped stdin and stdout (stderr is inherited: it is
//! the container's log), listens on SOCKET, and relays between the server
//! and one client at a time; a new client replaces the previous one. Whole
//! lines only, in both directions (MCP's stdio transport is one JSON-RPC
//! message per line): a line a client sent only in part is dropped with
//! that client, and a line the server wrote goes whole to one client. While
//! no client is connected the server's output is not read, so it waits in
//! the pipe (and the server blocks when the pipe is full) rather than being
//! lost. SIGTERM, SIGINT, SIGHUP and SIGQUIT are passed on to the server;
//! the relay exits with the server's exit status.
//!
//! It is built by the podman backend's build script with the standard
//! library only, linked statically, so that it runs in any image.

use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{ChildStdin, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;

/// The server's process id, for the signal handler.
static SERVER: AtomicI32 = AtomicI32::new(0);

const SIGHUP: i32 = 1;
const SIGINT: i32 = 2;
const SIGQUIT: i32 = 3;
const SIGTERM: i32 = 15;

unsafe extern "C" {
    fn signal(signum: i32, handler: extern "C" fn(i32)) -> usize;
    fn kill(pid: i32, sig: i32) -> i32;
}

/// Passes a signal on to the server. Only async-signal-safe calls.
extern "C" fn forward(sig: i32) {
    let pid = SERVER.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe and takes plain integers.
        unsafe {
            kill(pid, sig);
        }
    }
}

/// The client currently connected, with a generation number that changes
/// with each new client.
struct Current {
    client: Option<(u64, UnixStream)>,
    next: u64,
}

struct Shared {
    current: Mutex<Current>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for a client and returns a handle to write to it.
    fn client(&self) -> (u64, UnixStream) {
        let mut current = self.lock();
        loop {
            if let Some((id, stream)) = &current.client
                && let Ok(stream) = stream.try_clone()
            {
                return (*id, stream);
            }
            current = self
                .changed
                .wait(current)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Forgets client `id` if it is still the current one.
    fn drop_client(&self, id: u64) {
        let mut current = self.lock();
        if current.client.as_ref().is_some_and(|(c, _)| *c == id)
            && let Some((_, stream)) = current.client.take()
        {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// What the command line asks for.
struct Args {
    /// Environment variables of the server, and the files holding their
    /// values.
    env_files: Vec<(String, String)>,
    /// Where to serve the server's stdio; `None` with `--exec`.
    socket: Option<String>,
    /// The server's command line, never empty.
    command: Vec<String>,
}

const USAGE: &str = "usage: berth-stdio-relay [--env NAME=FILE]... SOCKET -- PROGRAM [ARGS...]
       berth-stdio-relay [--env NAME=FILE]... --exec -- PROGRAM [ARGS...]";

fn parse(args: &[String]) -> Option<Args> {
    let mut env_files = Vec::new();
    let mut rest = args.get(1..)?;
    while let [flag, pair, more @ ..] = rest
        && flag == "--env"
    {
        let (name, file) = pair.split_once('=')?;
        if name.is_empty() || file.is_empty() {
            return None;
        }
        env_files.push((name.to_owned(), file.to_owned()));
        rest = more;
    }
    match rest {
        [target, dashes, command @ ..] if dashes == "--" && !command.is_empty() => Some(Args {
            env_files,
            socket: (target != "--exec").then(|| target.clone()),
            command: command.to_vec(),
        }),
        _ => None,
    }
}

/// Reads each `--env` file: the server's secret environment variables.
/// An error names the variable and its file, never a value.
fn secret_env(env_files: &[(String, String)]) -> Result<Vec<(String, OsString)>, String> {
    env_files
        .iter()
        .map(|(name, file)| match std::fs::read(file) {
            Ok(value) => Ok((name.clone(), OsString::from_vec(value))),
            Err(e) => Err(format!("cannot read the value of {name} from {file}: {e}")),
        })
        .collect()
}

/// The exit code for a server that could not be started.
fn start_failure(program: &str, e: &io::Error) -> ExitCode {
    eprintln!("berth-stdio-relay: cannot start {program}: {e}");
    ExitCode::from(if e.kind() == io::ErrorKind::NotFound {
        127
    } else {
        126
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let Some(Args {
        env_files,
        socket,
        command,
    }) = parse(&args)
    else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let env = match secret_env(&env_files) {
        Ok(env) => env,
        Err(e) => {
            eprintln!("berth-stdio-relay: {e}");
            return ExitCode::from(125);
        }
    };
    let Some(socket) = socket else {
        // `--exec`: become the server, with its secrets.
        let e = Command::new(&command[0])
            .args(&command[1..])
            .envs(env)
            .exec();
        return start_failure(&command[0], &e);
    };

    let _ = std::fs::remove_file(&socket);
    let listener = match UnixListener::bind(&socket) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("berth-stdio-relay: cannot listen on {socket}: {e}");
            return ExitCode::from(125);
        }
    };
    // berth may map to another user than the server (rootless Podman); the
    // socket's directory is private to berth on the host.
    let _ = std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o777));

    for sig in [SIGHUP, SIGINT, SIGQUIT, SIGTERM] {
        // SAFETY: installs a handler that only calls kill(2).
        unsafe {
            signal(sig, forward);
        }
    }
    let mut server = match Command::new(&command[0])
        .args(&command[1..])
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => return start_failure(&command[0], &e),
    };
    SERVER.store(i32::try_from(server.id()).unwrap_or(0), Ordering::Relaxed);
    let stdin = Arc::new(Mutex::new(server.stdin.take().expect("piped stdin")));
    let stdout = server.stdout.take().expect("piped stdout");
    let shared = Arc::new(Shared {
        current: Mutex::new(Current {
            client: None,
            next: 0,
        }),
        changed: Condvar::new(),
    });

    {
        let shared = shared.clone();
        thread::spawn(move || accept(&listener, &shared, &stdin));
    }
    let (drained, output_done) = std::sync::mpsc::channel::<()>();
    {
        let shared = shared.clone();
        thread::spawn(move || {
            to_clients(stdout, &shared);
            let _ = drained.send(());
        });
    }

    let status = loop {
        match server.wait() {
            Ok(status) => break status,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                eprintln!("berth-stdio-relay: waiting for the server: {e}");
                return ExitCode::from(125);
            }
        }
    };
    // The server's last lines still go out to a connected client; with
    // nobody connected they are not waited for long.
    let _ = output_done.recv_timeout(std::time::Duration::from_secs(2));
    let _ = std::fs::remove_file(&socket);
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        (None, Some(sig)) => ExitCode::from(u8::try_from(128 + sig).unwrap_or(255)),
        _ => ExitCode::FAILURE,
    }
}

/// Accepts clients; each replaces the one before.
fn accept(listener: &UnixListener, shared: &Arc<Shared>, stdin: &Arc<Mutex<ChildStdin>>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let Ok(reader) = stream.try_clone() else {
            continue;
        };
        let id = {
            let mut current = shared.lock();
            let id = current.next;
            current.next += 1;
            if let Some((_, old)) = current.client.replace((id, stream)) {
                let _ = old.shutdown(std::net::Shutdown::Both);
            }
            id
        };
        shared.changed.notify_all();
        let shared = shared.clone();
        let stdin = stdin.clone();
        thread::spawn(move || from_client(reader, id, &shared, &stdin));
    }
}

/// Copies whole lines from client `id` to the server's stdin.
fn from_client(stream: UnixStream, id: u64, shared: &Shared, stdin: &Mutex<ChildStdin>) {
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) if line.last() != Some(&b'\n') => break,
            Ok(_) => {}
        }
        let mut stdin = stdin.lock().unwrap_or_else(PoisonError::into_inner);
        if stdin.write_all(&line).and_then(|()| stdin.flush()).is_err() {
            // The server closed its stdin or exited; the relay ends with it.
            break;
        }
    }
    shared.drop_client(id);
}

/// Copies whole lines of the server's stdout to the current client; a line
/// that could not be written goes to the next client.
fn to_clients(stdout: impl Read, shared: &Shared) {
    let mut reader = BufReader::with_capacity(64 * 1024, stdout);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        loop {
            let (id, mut client) = shared.client();
            if client.write_all(&line).is_ok() {
                break;
            }
            shared.drop_client(id);
        }
    }
    // The server closed its stdout: tell the client.
    let current = shared.lock();
    if let Some((_, stream)) = &current.client {
        let _ = stream.shutdown(std::net::Shutdown::Write);
    }
}
