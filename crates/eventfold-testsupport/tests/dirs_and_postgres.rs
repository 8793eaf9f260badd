//! Temporary directories, and the PostgreSQL schema guard (which needs
//! `EVENTFOLD_TEST_POSTGRES_URL`; without it the test says loudly that it skipped).

use eventfold_testsupport::dirs::{holds_bytes, path_arg, temp_dir};
use eventfold_testsupport::postgres::{TestSchema, database_url};

#[test]
fn a_temporary_directory_is_removed_when_dropped() {
    let dir = temp_dir();
    let path = dir.path().to_path_buf();
    std::fs::write(dir.join("file"), b"data").unwrap();
    assert_eq!(dir.arg(), path_arg(&path));
    assert!(path.join("file").exists());
    drop(dir);
    assert!(!path.exists(), "{} is still there", path.display());
}

#[test]
fn holds_bytes_searches_every_file_below_a_directory() {
    let dir = temp_dir();
    std::fs::create_dir_all(dir.join("a/b")).unwrap();
    std::fs::write(dir.join("a/b/deep"), b"xx-needle-xx").unwrap();
    std::fs::write(dir.join("top"), b"nothing here").unwrap();
    assert!(holds_bytes(dir.path(), b"needle"));
    assert!(!holds_bytes(dir.path(), b"haystack"));
}

#[test]
fn a_test_schema_is_dropped_with_its_guard() {
    let Some(url) = database_url() else { return };
    let schema = TestSchema::new(&url, "ef_support");
    assert!(schema.name.starts_with("ef_support_"));
    assert!(
        !schema.exists(),
        "nothing creates the schema but the code under test"
    );
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    client
        .batch_execute(&format!(
            "CREATE SCHEMA \"{0}\"; CREATE TABLE \"{0}\".t (n INT)",
            schema.name
        ))
        .unwrap();
    assert!(schema.exists());
    let name = schema.name.clone();
    drop(schema);
    let left = client
        .query_one(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1",
            &[&name],
        )
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(left, 0, "schema {name} was not dropped");
}
