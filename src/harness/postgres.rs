//! Databases for tests and the bench: SQLite in a data dir, or a new,
//! empty database on a PostgreSQL server, dropped afterwards, so runs
//! never see each other's rows.
//!
//! The server is `TEST_DATABASE_URL` when set (and must be reachable: a
//! missing server fails, it never skips), else the local default
//! `postgres://postgres@127.0.0.1:5432/test`. When nothing listens there
//! but PostgreSQL's binaries are installed (Debian's `postgresql`), a
//! throwaway cluster is started in a temp directory for the test run:
//! shared by the run's test processes, listening on a Unix socket only,
//! and stopped and removed when the run's runner process exits.

use std::path::{Path, PathBuf};

use sea_orm::{ConnectionTrait, Database};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The database a test runs on, and how to get rid of it.
pub struct TestDatabase {
    pub url: String,
    /// PostgreSQL only: (admin URL, database name) to drop at the end.
    drop: Option<(String, String)>,
}

impl TestDatabase {
    /// SQLite in `data_dir`, or a new database on the test server.
    pub async fn new(backend: Backend, data_dir: &Path) -> Self {
        match backend {
            Backend::Sqlite => Self {
                url: format!(
                    "sqlite://{}?mode=rwc",
                    data_dir.join("browserd.db").display()
                ),
                drop: None,
            },
            Backend::Postgres => Self::fresh_postgres(&admin_url().await).await,
        }
    }

    /// A new, empty database on the server at `admin`.
    pub async fn fresh_postgres(admin: &str) -> Self {
        let name = format!("browserd_test_{}", uuid::Uuid::new_v4().simple());
        let conn = Database::connect(admin).await.unwrap_or_else(|e| {
            panic!("the PostgreSQL tests need the server at {admin} (TEST_DATABASE_URL): {e}")
        });
        conn.execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        conn.close().await.expect("close admin connection");
        Self {
            url: with_database(admin, &name),
            drop: Some((admin.to_owned(), name)),
        }
    }

    /// Keeps the database when this handle is consumed by a restart.
    pub fn take(&mut self) -> Self {
        Self {
            url: self.url.clone(),
            drop: self.drop.take(),
        }
    }

    pub async fn remove(mut self) {
        if let Some((admin, name)) = self.drop.take() {
            let conn = Database::connect(&admin).await.expect("admin connection");
            conn.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await
                .expect("drop test database");
        }
    }

    pub async fn execute(&self, sql: &str) {
        let conn = Database::connect(&self.url)
            .await
            .expect("test db connection");
        conn.execute_unprepared(sql).await.expect("test sql");
        conn.close().await.expect("close test db connection");
    }

    /// Everything the database holds, as an attacker who can read it
    /// would see it: SQLite's files byte for byte (the WAL and its index
    /// included, where fresh writes live), or every row of every table of
    /// a PostgreSQL database as JSON text.
    pub async fn raw_contents(&self) -> Vec<u8> {
        if let Some(rest) = self.url.strip_prefix("sqlite://") {
            let file = rest.split('?').next().unwrap_or(rest);
            let mut bytes = Vec::new();
            for suffix in ["", "-wal", "-shm", "-journal"] {
                if let Ok(content) = std::fs::read(format!("{file}{suffix}")) {
                    bytes.extend(content);
                }
            }
            return bytes;
        }
        let conn = Database::connect(&self.url)
            .await
            .expect("test db connection");
        let backend = conn.get_database_backend();
        let tables = conn
            .query_all_raw(sea_orm::Statement::from_string(
                backend,
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
            ))
            .await
            .expect("list tables");
        let mut bytes = Vec::new();
        for table in tables {
            let name: String = table.try_get("", "tablename").expect("table name");
            let rows = conn
                .query_all_raw(sea_orm::Statement::from_string(
                    backend,
                    format!("SELECT row_to_json(t)::text AS row FROM \"{name}\" t"),
                ))
                .await
                .expect("dump a table");
            for row in rows {
                let text: String = row.try_get("", "row").expect("row as JSON");
                bytes.extend(text.into_bytes());
                bytes.push(b'\n');
            }
        }
        conn.close().await.expect("close test db connection");
        bytes
    }

    /// The newest event's sequence (0 when there is none), read from the
    /// database itself rather than through browserd.
    pub async fn newest_sequence(&self) -> u64 {
        let conn = Database::connect(&self.url)
            .await
            .expect("test db connection");
        let row = conn
            .query_one_raw(sea_orm::Statement::from_string(
                conn.get_database_backend(),
                "SELECT COALESCE(MAX(sequence), 0) AS newest FROM session_events",
            ))
            .await
            .expect("query newest sequence")
            .expect("one row");
        let newest: i64 = row.try_get("", "newest").expect("newest column");
        conn.close().await.expect("close test db connection");
        newest as u64
    }
}

/// `url` naming database `name` instead (query parameters kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let server = base
        .rsplit_once('/')
        .map(|(server, _)| server)
        .expect("a PostgreSQL URL names a database");
    match query {
        "" => format!("{server}/{name}"),
        query => format!("{server}/{name}?{query}"),
    }
}

/// The PostgreSQL server the tests use: see the module comment.
pub async fn admin_url() -> String {
    if let Ok(url) = std::env::var("TEST_DATABASE_URL") {
        return url;
    }
    if tokio::net::TcpStream::connect("127.0.0.1:5432")
        .await
        .is_ok()
    {
        return DEFAULT_URL.to_owned();
    }
    tokio::task::spawn_blocking(throwaway_cluster)
        .await
        .expect("starting a throwaway PostgreSQL panicked")
}

/// Starts (once per test run) a PostgreSQL cluster in a temp directory and
/// returns its URL.
fn throwaway_cluster() -> String {
    // The test runner: nextest runs each test in a process of its own, and
    // they all share the cluster of the run.
    let runner = std::os::unix::process::parent_id();
    let dir = std::env::temp_dir().join(format!("browserd-test-pg-{runner}"));
    std::fs::create_dir_all(&dir).expect("cluster directory");
    let lock = std::fs::File::create(dir.join("lock")).expect("cluster lock file");
    // SAFETY: flock on a descriptor this function owns; released on close.
    let locked = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
    assert_eq!(locked, 0, "lock {}", dir.display());
    let ready = dir.join("ready");
    if let Ok(url) = std::fs::read_to_string(&ready) {
        return url;
    }
    let cluster = Cluster::create(&dir);
    cluster.start();
    // Stops and removes the cluster once the runner is gone, whatever
    // becomes of this process. (Not `kill -0`: as `postgres` it may not
    // signal the runner.) Backgrounded by a shell that exits at once (and
    // is waited for), so the watchdog is no child of this process.
    let watchdog = format!(
        "(while [ -d /proc/{runner} ]; do sleep 1; done; '{}' -D '{}' -m immediate stop; rm -rf '{}') >/dev/null 2>&1 &",
        cluster.bin.join("pg_ctl").display(),
        cluster.data.display(),
        dir.display(),
    );
    let mut sh = cluster.command("sh");
    sh.args(["-c", &watchdog]);
    // SAFETY: setsid only detaches the child from this process's session.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut sh, || {
            libc::setsid();
            Ok(())
        });
    }
    let status = sh.status().expect("start the cluster's watchdog");
    assert!(status.success(), "the cluster's watchdog: {status}");
    std::fs::write(&ready, &cluster.url).expect("mark the cluster ready");
    cluster.url.clone()
}

/// A PostgreSQL cluster of the tests' own, in a directory, listening on a
/// Unix socket there only: so a test can stop and start its database (an
/// outage) without touching anyone else's.
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    data: PathBuf,
    /// PostgreSQL refuses to run as root: as root, it runs as `postgres`.
    owner: Option<(u32, u32)>,
    /// Its `postgres` database, as an admin URL.
    pub url: String,
}

impl Cluster {
    /// `initdb` in `dir` (which must exist); not started yet.
    pub fn create(dir: &Path) -> Self {
        let bin = postgres_bin().unwrap_or_else(|| {
            panic!(
                "no PostgreSQL server at 127.0.0.1:5432 and no PostgreSQL binaries to start one: \
                 install PostgreSQL (Debian: apt-get install -y postgresql) or set TEST_DATABASE_URL"
            )
        });
        // SAFETY: geteuid has no preconditions.
        let owner = (unsafe { libc::geteuid() } == 0)
            .then(postgres_user)
            .flatten();
        if let Some((uid, _)) = owner {
            std::os::unix::fs::chown(dir, Some(uid), None).expect("chown cluster directory");
        }
        let cluster = Self {
            url: format!(
                "postgres://postgres@localhost/postgres?host={}",
                dir.display()
            ),
            data: dir.join("data"),
            dir: dir.to_owned(),
            bin,
            owner,
        };
        let mut initdb = cluster.command("initdb");
        initdb.arg("-D").arg(&cluster.data);
        initdb.args(["-U", "postgres", "--auth=trust", "--no-sync"]);
        cluster.run(initdb, "initdb");
        cluster
    }

    /// Starts it and waits until it takes connections.
    pub fn start(&self) {
        let options = format!(
            "-k {} -c listen_addresses= -c fsync=off",
            self.dir.display()
        );
        let mut pg_ctl = self.command("pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(&self.data)
            .args(["-o", &options, "-l"]);
        pg_ctl.arg(self.dir.join("log")).args(["-w", "start"]);
        self.run(pg_ctl, "pg_ctl start");
    }

    /// Stops it as an operator would (`-m fast`: connections are ended).
    pub fn stop(&self) {
        let mut pg_ctl = self.command("pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "stop"]);
        self.run(pg_ctl, "pg_ctl stop");
    }

    /// Stops it if it runs, for cleaning up after a failed test.
    pub fn stop_if_running(&self) {
        let mut pg_ctl = self.command("pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"]);
        let _ = pg_ctl.status();
    }

    /// One of its programs (or any, by path), as the cluster's owner.
    fn command(&self, program: &str) -> std::process::Command {
        use std::os::unix::process::CommandExt;
        let path = match self.bin.join(program) {
            path if path.is_file() => path,
            _ => PathBuf::from(program),
        };
        let mut command = std::process::Command::new(path);
        command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Some((uid, gid)) = self.owner {
            command.uid(uid).gid(gid);
        }
        command
    }

    fn run(&self, mut command: std::process::Command, what: &str) {
        let status = command
            .status()
            .unwrap_or_else(|e| panic!("run {what}: {e}"));
        assert!(
            status.success(),
            "{what} failed: {status}; see {}",
            self.dir.join("log").display()
        );
    }
}

/// The directory of `initdb` and `pg_ctl`: Debian keeps them out of PATH.
fn postgres_bin() -> Option<PathBuf> {
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|version| version.path().join("bin"))
        .collect();
    debian.sort();
    let path = std::env::var_os("PATH").unwrap_or_default();
    debian
        .into_iter()
        .rev()
        .chain(std::env::split_paths(&path))
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
}

/// The uid and gid of the `postgres` user, if there is one.
fn postgres_user() -> Option<(u32, u32)> {
    // SAFETY: getpwnam returns a pointer into static storage or null; it is
    // read at once, before any other call could overwrite it.
    unsafe {
        let entry = libc::getpwnam(c"postgres".as_ptr());
        (!entry.is_null()).then(|| ((*entry).pw_uid, (*entry).pw_gid))
    }
}
