use std::os::unix::fs::{chown, symlink};
use std::time::Duration;

use super::*;

/// The owner given to the test home (run as root, as CI does; otherwise
/// the home keeps the test user as its owner).
const OWNER: u32 = 4242;

/// An outer temp dir holding `home/` (owned by [`OWNER`]) and `outside/`.
struct Fixture {
    tmp: tempfile::TempDir,
    home: Home,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("home");
        fs::create_dir(&root).expect("home");
        fs::create_dir(tmp.path().join("outside")).expect("outside");
        let _ = chown(&root, Some(OWNER), Some(OWNER));
        let home = Home::open(&root).expect("open home");
        Self { tmp, home }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.home.root().join(rel)
    }

    fn outside(&self) -> PathBuf {
        fs::canonicalize(self.tmp.path().join("outside")).expect("outside")
    }

    /// Every path below the outer temp dir, sorted.
    fn tree(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in fs::read_dir(dir).expect("read_dir") {
                let path = entry.expect("entry").path();
                out.push(path.clone());
                if fs::symlink_metadata(&path).expect("meta").is_dir() {
                    walk(&path, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(self.tmp.path(), &mut out);
        out.sort();
        out
    }
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, Permissions::from_mode(mode)).expect("chmod");
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("meta").mode() & 0o7777
}

fn owner(path: &Path) -> (u32, u32) {
    let meta = fs::metadata(path).expect("meta");
    (meta.uid(), meta.gid())
}

fn set_to(text: &str) -> impl FnOnce(&str) -> Result<Option<String>, FormatError> {
    let text = text.to_owned();
    move |_| Ok(Some(text))
}

fn never(_: &str) -> Result<Option<String>, FormatError> {
    panic!("f must not be called")
}

#[test]
fn a_new_file_and_its_directories_belong_to_the_home_owner() {
    let fx = Fixture::new();
    let owner_ids = (fx.home.uid, fx.home.gid);
    assert_eq!(
        read(&fx.home, Path::new(".cursor/sub/mcp.json")).expect("read"),
        None
    );
    let mut seen = None;
    let written = edit(&fx.home, Path::new(".cursor/sub/mcp.json"), |text| {
        seen = Some(text.to_owned());
        Ok(Some("{}\n".into()))
    })
    .expect("edit");
    assert!(written);
    assert_eq!(seen.as_deref(), Some(""), "a missing file reads as empty");
    for dir in [".cursor", ".cursor/sub"] {
        assert_eq!(mode(&fx.path(dir)), 0o700, "{dir}");
        assert_eq!(owner(&fx.path(dir)), owner_ids, "{dir}");
    }
    for file in [".cursor/sub/mcp.json", ".cursor/sub/mcp.json.lock"] {
        assert_eq!(mode(&fx.path(file)), 0o600, "{file}");
        assert_eq!(owner(&fx.path(file)), owner_ids, "{file}");
    }
    assert_eq!(
        read(&fx.home, Path::new(".cursor/sub/mcp.json")).expect("read"),
        Some("{}\n".into())
    );
    // An absolute path inside home is the same file.
    let abs = fx.path(".cursor/sub/mcp.json");
    assert_eq!(read(&fx.home, &abs).expect("read").as_deref(), Some("{}\n"));
    assert!(fx.home.exists(Path::new(".cursor")));
    assert!(fx.home.exists(&abs));
    assert!(!fx.home.exists(Path::new(".codex")));
}

#[test]
fn home_must_be_a_directory() {
    let fx = Fixture::new();
    fs::write(fx.path("file"), "x").expect("write");
    assert!(matches!(
        Home::open(&fx.path("file")),
        Err(EditError::Io { .. })
    ));
    assert!(matches!(
        Home::open(&fx.path("missing")),
        Err(EditError::Io { .. })
    ));
}

#[test]
fn an_existing_file_keeps_its_mode_and_owner() {
    let fx = Fixture::new();
    let path = fx.path(".claude.json");
    fs::write(&path, "old").expect("write");
    set_mode(&path, 0o640);
    chown(&path, Some(1000), Some(2000)).expect("chown (the tests run as root)");
    assert!(edit(&fx.home, Path::new(".claude.json"), set_to("new")).expect("edit"));
    assert_eq!(fs::read_to_string(&path).expect("read"), "new");
    assert_eq!(mode(&path), 0o640);
    assert_eq!(owner(&path), (1000, 2000));
}

#[test]
fn setuid_and_sticky_bits_are_not_kept() {
    let fx = Fixture::new();
    let path = fx.path("conf");
    fs::write(&path, "old").expect("write");
    set_mode(&path, 0o6755);
    assert!(edit(&fx.home, Path::new("conf"), set_to("new")).expect("edit"));
    assert_eq!(mode(&path), 0o755);
}

#[test]
fn a_symlinked_file_is_edited_at_its_target() {
    let fx = Fixture::new();
    fs::create_dir(fx.path("dotfiles")).expect("mkdir");
    fs::write(fx.path("dotfiles/claude.json"), "old").expect("write");
    symlink("dotfiles/claude.json", fx.path(".claude.json")).expect("symlink");
    assert_eq!(
        read(&fx.home, Path::new(".claude.json"))
            .expect("read")
            .as_deref(),
        Some("old")
    );
    assert!(edit(&fx.home, Path::new(".claude.json"), set_to("new")).expect("edit"));
    assert_eq!(
        fs::read_to_string(fx.path("dotfiles/claude.json")).expect("read"),
        "new"
    );
    let link = fs::symlink_metadata(fx.path(".claude.json")).expect("meta");
    assert!(link.file_type().is_symlink(), "the link stays a link");
    assert_eq!(
        fs::read_link(fx.path(".claude.json")).expect("link"),
        Path::new("dotfiles/claude.json")
    );
    assert!(fx.path("dotfiles/claude.json.lock").exists());
    assert!(!fx.path(".claude.json.lock").exists());
}

#[test]
fn a_dangling_symlink_inside_home_creates_its_target() {
    let fx = Fixture::new();
    // An absolute link through a symlinked directory, to a missing file
    // in a missing directory.
    symlink(fx.path("dotfiles"), fx.path("df")).expect("symlink");
    symlink(fx.path("df/cursor/mcp.json"), fx.path("mcp.json")).expect("symlink");
    assert!(edit(&fx.home, Path::new("mcp.json"), set_to("{}")).expect("edit"));
    assert_eq!(
        fs::read_to_string(fx.path("dotfiles/cursor/mcp.json")).expect("read"),
        "{}"
    );
    assert!(
        fs::symlink_metadata(fx.path("mcp.json"))
            .expect("meta")
            .file_type()
            .is_symlink()
    );
    assert_eq!(mode(&fx.path("dotfiles")), 0o700);
}

/// Asserts that editing `rel` is refused as escaping and creates nothing.
fn assert_escapes(fx: &Fixture, rel: &str) {
    let before = fx.tree();
    let err = edit(&fx.home, Path::new(rel), never).expect_err(rel);
    assert!(matches!(err, EditError::Escapes { .. }), "{rel}: {err}");
    assert!(
        err.to_string().contains("outside the home directory"),
        "{err}"
    );
    let err = read(&fx.home, Path::new(rel)).expect_err(rel);
    assert!(matches!(err, EditError::Escapes { .. }), "{rel}: {err}");
    assert_eq!(fx.tree(), before, "{rel}: nothing created");
}

#[test]
fn a_symlink_out_of_home_is_refused() {
    let fx = Fixture::new();
    let target = fx.outside().join("config.json");
    fs::write(&target, "theirs").expect("write");
    symlink(&target, fx.path(".claude.json")).expect("symlink");
    symlink("../outside/missing.json", fx.path("dangling.json")).expect("symlink");
    symlink("/etc/hostname", fx.path("etc.json")).expect("symlink");
    assert_escapes(&fx, ".claude.json");
    assert_escapes(&fx, "dangling.json");
    assert_escapes(&fx, "etc.json");
    assert!(!Path::new("/etc/hostname.lock").exists());
    assert_eq!(fs::read_to_string(&target).expect("read"), "theirs");
    assert!(!fx.home.exists(Path::new(".claude.json")));
}

#[test]
fn a_symlinked_directory_out_of_home_is_refused() {
    let fx = Fixture::new();
    symlink(fx.outside(), fx.path(".cursor")).expect("symlink");
    assert_escapes(&fx, ".cursor/mcp.json");
    assert_escapes(&fx, ".cursor/deeper/mcp.json");
    assert!(!fx.home.exists(Path::new(".cursor")));
}

#[test]
fn dot_dot_out_of_home_is_refused() {
    let fx = Fixture::new();
    fs::create_dir(fx.path("a")).expect("mkdir");
    assert_escapes(&fx, "../x.json");
    assert_escapes(&fx, "a/../../x.json");
    assert_escapes(&fx, "missing/../../outside/x.json");
    assert_escapes(&fx, "/etc/x.json");
    // `..` that stays inside is fine.
    assert!(edit(&fx.home, Path::new("a/../b.json"), set_to("b")).expect("edit"));
    assert_eq!(fs::read_to_string(fx.path("b.json")).expect("read"), "b");
}

#[test]
fn home_itself_is_not_a_file() {
    let fx = Fixture::new();
    for rel in ["", ".", "a/.."] {
        let err = edit(&fx.home, Path::new(rel), never).expect_err(rel);
        assert!(matches!(err, EditError::NotAFile { .. }), "{rel}: {err}");
    }
}

#[test]
fn a_symlink_loop_is_an_error_not_a_hang() {
    let fx = Fixture::new();
    symlink("b", fx.path("a")).expect("symlink");
    symlink("a", fx.path("b")).expect("symlink");
    let err = edit(&fx.home, Path::new("a"), never).expect_err("loop");
    assert!(matches!(err, EditError::Io { .. }), "{err}");
}

#[test]
fn the_walk_never_follows_a_symlink() {
    // A directory swapped for a link after the resolution: the walk from
    // home fails instead of following it.
    let fx = Fixture::new();
    symlink(fx.outside(), fx.path("swapped")).expect("symlink");
    let err = open_dirs(fx.home.root(), Path::new("swapped")).expect_err("a link");
    assert!(
        matches!(err.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)),
        "{err}"
    );
}

#[test]
fn a_read_only_file_is_refused() {
    let fx = Fixture::new();
    let path = fx.path(".claude.json");
    fs::write(&path, "old").expect("write");
    set_mode(&path, 0o444);
    let before = fx.tree();
    let err = edit(&fx.home, Path::new(".claude.json"), never).expect_err("read-only");
    assert!(matches!(err, EditError::ReadOnly { .. }), "{err}");
    assert!(err.to_string().contains(".claude.json"), "{err}");
    assert_eq!(fs::read_to_string(&path).expect("read"), "old");
    assert_eq!(fx.tree(), before, "not even a lock file");
    // Reading is still fine.
    assert_eq!(
        read(&fx.home, Path::new(".claude.json"))
            .expect("read")
            .as_deref(),
        Some("old")
    );
}

#[test]
fn a_read_only_directory_is_refused() {
    let fx = Fixture::new();
    fs::create_dir(fx.path("ro")).expect("mkdir");
    set_mode(&fx.path("ro"), 0o555);
    let before = fx.tree();
    for rel in ["ro/new.json", "ro/missing/new.json"] {
        let err = edit(&fx.home, Path::new(rel), never).expect_err(rel);
        assert!(matches!(err, EditError::ReadOnly { .. }), "{rel}: {err}");
    }
    assert_eq!(fx.tree(), before, "nothing created");
    // An existing writable file in it cannot be replaced either.
    set_mode(&fx.path("ro"), 0o755);
    fs::write(fx.path("ro/old.json"), "old").expect("write");
    set_mode(&fx.path("ro"), 0o555);
    let err = edit(&fx.home, Path::new("ro/old.json"), never).expect_err("ro dir");
    assert!(matches!(err, EditError::ReadOnly { .. }), "{err}");
    set_mode(&fx.path("ro"), 0o755);
}

#[test]
fn a_directory_or_fifo_is_not_a_file() {
    let fx = Fixture::new();
    fs::create_dir(fx.path("dir.json")).expect("mkdir");
    nix::unistd::mkfifo(&fx.path("fifo.json"), Mode::S_IRUSR | Mode::S_IWUSR).expect("mkfifo");
    let before = fx.tree();
    for rel in ["dir.json", "fifo.json"] {
        // A fifo opened for reading would block forever: these return.
        let err = edit(&fx.home, Path::new(rel), never).expect_err(rel);
        assert!(matches!(err, EditError::NotAFile { .. }), "{rel}: {err}");
        let err = read(&fx.home, Path::new(rel)).expect_err(rel);
        assert!(matches!(err, EditError::NotAFile { .. }), "{rel}: {err}");
    }
    assert_eq!(fx.tree(), before, "nothing created");
}

#[test]
fn a_file_that_is_not_utf8_is_refused_without_quoting_it() {
    let fx = Fixture::new();
    let path = fx.path("bin.json");
    fs::write(&path, b"secret-token \xff\xfe").expect("write");
    let err = edit(&fx.home, Path::new("bin.json"), never).expect_err("binary");
    assert!(matches!(err, EditError::NotText { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("bin.json") && !message.contains("secret"),
        "{message}"
    );
    let err = read(&fx.home, Path::new("bin.json")).expect_err("binary");
    assert!(matches!(err, EditError::NotText { .. }), "{err}");
    assert_eq!(fs::read(&path).expect("read"), b"secret-token \xff\xfe");
}

#[test]
fn a_file_over_the_limit_is_not_read() {
    let fx = Fixture::new();
    let path = fx.path("big.json");
    File::create(&path)
        .expect("create")
        .set_len(LIMIT + 1)
        .expect("sparse file");
    let err = edit(&fx.home, Path::new("big.json"), never).expect_err("too large");
    assert!(
        matches!(err, EditError::TooLarge { limit: LIMIT, .. }),
        "{err}"
    );
    let err = read(&fx.home, Path::new("big.json")).expect_err("too large");
    assert!(matches!(err, EditError::TooLarge { .. }), "{err}");
    assert_eq!(fs::metadata(&path).expect("meta").len(), LIMIT + 1);
}

#[test]
fn concurrent_edits_lose_nothing() {
    let fx = Fixture::new();
    const THREADS: usize = 8;
    const EDITS: usize = 25;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let home = &fx.home;
            s.spawn(move || {
                for e in 0..EDITS {
                    edit(home, Path::new(".config/app/list.txt"), |text| {
                        // Widen the window between read and write.
                        std::thread::sleep(Duration::from_micros(200));
                        Ok(Some(format!("{text}{t}-{e}\n")))
                    })
                    .expect("edit");
                }
            });
        }
    });
    let text = fs::read_to_string(fx.path(".config/app/list.txt")).expect("read");
    let mut lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), THREADS * EDITS, "no edit lost");
    lines.sort_unstable();
    lines.dedup();
    assert_eq!(lines.len(), THREADS * EDITS, "each edit once");
    let dir: Vec<_> = fs::read_dir(fx.path(".config/app"))
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        dir.len(),
        2,
        "the file and its lock, no temp files: {dir:?}"
    );
}

#[test]
fn a_refusing_writer_leaves_the_file_intact() {
    let fx = Fixture::new();
    let path = fx.path(".claude.json");
    fs::write(&path, "{\"token\": \"secret\"}").expect("write");
    let err = edit(&fx.home, Path::new(".claude.json"), |_| {
        Err(FormatError::Parse {
            format: "JSON",
            message: "unexpected `secret` at line 1".into(),
        })
    })
    .expect_err("refused");
    assert!(matches!(err, EditError::Format { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(".claude.json") && message.contains("JSON") && !message.contains("secret"),
        "{message}"
    );
    assert_eq!(
        fs::read_to_string(&path).expect("read"),
        "{\"token\": \"secret\"}"
    );
    let mut names: Vec<_> = fs::read_dir(fx.home.root())
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    names.sort();
    assert_eq!(names, [".claude.json", ".claude.json.lock"]);
}

#[test]
fn a_failed_replacement_removes_its_temp_file_and_keeps_the_original() {
    // The rename fails after the temp file is written (the target became a
    // non-empty directory): as a crash before the rename would, it leaves
    // the original, and the temp file is removed.
    let fx = Fixture::new();
    fs::create_dir(fx.path("victim")).expect("mkdir");
    fs::write(fx.path("victim/inside"), "kept").expect("write");
    let dir = File::open(fx.home.root()).expect("open home");
    let err = replace(
        &dir,
        OsStr::new("victim"),
        b"new",
        0o600,
        (fx.home.uid, fx.home.gid),
    )
    .expect_err("rename fails");
    assert!(
        matches!(
            err.raw_os_error(),
            Some(libc::EISDIR | libc::ENOTEMPTY | libc::EEXIST)
        ),
        "{err}"
    );
    let names: Vec<_> = fs::read_dir(fx.home.root())
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, ["victim"], "no temp file left");
    assert_eq!(
        fs::read_to_string(fx.path("victim/inside")).expect("read"),
        "kept"
    );
}

#[test]
fn an_unchanged_text_is_not_written() {
    let fx = Fixture::new();
    let path = fx.path("same.json");
    fs::write(&path, "same").expect("write");
    let before = fs::metadata(&path).expect("meta");
    std::thread::sleep(Duration::from_millis(20));
    assert!(!edit(&fx.home, Path::new("same.json"), |t| Ok(Some(t.to_owned()))).expect("edit"));
    assert!(!edit(&fx.home, Path::new("same.json"), |_| Ok(None)).expect("edit"));
    let after = fs::metadata(&path).expect("meta");
    assert_eq!(after.ino(), before.ino(), "not replaced");
    assert_eq!(
        after.modified().expect("mtime"),
        before.modified().expect("mtime")
    );
    // A missing file that stays empty is not created.
    assert!(
        !edit(&fx.home, Path::new("missing.json"), |_| Ok(Some(
            String::new()
        )))
        .expect("edit")
    );
    assert!(!edit(&fx.home, Path::new("missing.json"), |_| Ok(None)).expect("edit"));
    assert!(!fx.path("missing.json").exists());
}

#[test]
fn an_edit_replaces_the_file_rather_than_writing_through_it() {
    // A hard link elsewhere in home keeps the old content: the file is a
    // new inode, never written through.
    let fx = Fixture::new();
    fs::write(fx.path("conf"), "old").expect("write");
    fs::hard_link(fx.path("conf"), fx.path("other")).expect("link");
    assert!(edit(&fx.home, Path::new("conf"), set_to("new")).expect("edit"));
    assert_eq!(fs::read_to_string(fx.path("conf")).expect("read"), "new");
    assert_eq!(fs::read_to_string(fx.path("other")).expect("read"), "old");
}
