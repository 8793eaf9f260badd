//! The PostgreSQL test database: its URL from `EVENTFOLD_TEST_POSTGRES_URL`, or a loud
//! skip; and a schema of its own per test, dropped with everything in it afterwards.

/// The variable naming the test database.
pub const URL_VARIABLE: &str = "EVENTFOLD_TEST_POSTGRES_URL";

/// The test database's URL, or `None` after saying loudly on stderr that the running
/// test is skipped (a skip must never pass silently for a run).
pub fn database_url() -> Option<String> {
    match std::env::var(URL_VARIABLE) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let test = std::thread::current()
                .name()
                .unwrap_or("this test")
                .to_string();
            eprintln!(
                "SKIPPED: {test} needs {URL_VARIABLE} (a PostgreSQL database where it may create \
                 and drop schemas, e.g. postgres://postgres@127.0.0.1:5432/test)"
            );
            None
        }
    }
}

/// A schema of the test database for one test, dropped (with everything in it) when
/// this guard is dropped, also when the test fails. Nothing is created here: the code
/// under test creates the schema it is given.
#[derive(Debug)]
pub struct TestSchema {
    /// The database.
    pub url: String,
    /// The schema's name: `prefix` and a fresh UUID, so tests never share one.
    pub name: String,
}

impl TestSchema {
    /// A fresh schema name starting with `prefix` in the database at `url`.
    pub fn new(url: &str, prefix: &str) -> Self {
        TestSchema {
            url: url.to_string(),
            name: format!("{prefix}_{}", uuid::Uuid::new_v4().simple()),
        }
    }

    /// Whether the schema exists in the database now.
    ///
    /// # Panics
    ///
    /// When the database cannot be reached or queried: the test cannot go on.
    pub fn exists(&self) -> bool {
        let (url, name) = (self.url.clone(), self.name.clone());
        on_own_thread(move || {
            let mut client = postgres::Client::connect(&url, postgres::NoTls)?;
            let row = client.query_one(
                "SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1",
                &[&name],
            )?;
            Ok(row.get::<_, i64>(0) == 1)
        })
        .unwrap_or_else(|e| panic!("querying the schemas of {}: {e}", self.url))
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        let dropped = on_own_thread(move || {
            let mut client = postgres::Client::connect(&url, postgres::NoTls)?;
            client.batch_execute(&format!(
                "SET lock_timeout = '20s'; DROP SCHEMA IF EXISTS \"{name}\" CASCADE"
            ))
        });
        if let Err(e) = dropped {
            eprintln!("could not drop test schema {}: {e}", self.name);
        }
    }
}

/// Runs `work` with the blocking client on a thread of its own: the client runs a
/// runtime of its own, which must not be started on a thread of the test's runtime
/// (often the caller: a guard is dropped inside an async test, or while unwinding).
fn on_own_thread<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, postgres::Error> + Send + 'static,
) -> Result<T, String> {
    match std::thread::spawn(work).join() {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err("the database call panicked".to_string()),
    }
}
