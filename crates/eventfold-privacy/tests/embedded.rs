//! Crypto-shredding on the embedded engine, one scenario with reopen steps: personal
//! values never reach the data directory in plaintext, read back while their subject's
//! key exists, read as `{"$redacted": true}` after `forget` (also after a restart), and
//! every way a value can fail to open is an error that names it.

use std::path::Path;
use std::sync::Arc;

use eventfold_core::{
    Error, EventData, EventStore, ExpectedVersion, LayerExt, Layered, Position, ReadAll,
    ReadStream, StreamWrite,
};
use eventfold_log::{LogOptions, LogStore};
use eventfold_metadata::MetadataLayer;
use eventfold_privacy::{
    FileKeyStore, KEYS_DIR, MasterKey, MasterKeySource, PrivacyLayer, SUBJECT_KEYS_FILE,
};
use serde_json::{Value, json};

type Stack = Layered<MetadataLayer, Layered<PrivacyLayer, LogStore>>;

/// The store as `eventfold serve` builds it on a data directory.
fn open(dir: &Path, master: &MasterKey) -> Stack {
    let keys = FileKeyStore::open(&dir.join(KEYS_DIR), master.clone()).expect("key store");
    LogStore::open(dir, LogOptions::default())
        .expect("log")
        .layer(PrivacyLayer::new(Arc::new(keys)))
        .layer(MetadataLayer)
}

fn personal(data: Value, marking: Value) -> EventData {
    EventData::json("Personal", &data)
        .expect("event")
        .with_metadata(&json!({ "$personal": marking }))
        .expect("metadata")
}

/// An event as a client sends it, bytes as they are (not necessarily JSON).
fn raw_event(data: &[u8], metadata: &[u8]) -> EventData {
    EventData {
        id: None,
        event_type: "Personal".into(),
        version: 1,
        data: data.to_vec().into(),
        metadata: metadata.to_vec().into(),
    }
}

async fn data_of(store: &impl EventStore, stream: &str) -> Vec<Value> {
    store
        .read_stream(stream, ReadStream::forward())
        .await
        .expect("read")
        .iter()
        .map(|e| e.data_as::<Value>().expect("json"))
        .collect()
}

async fn all_data(store: &impl EventStore) -> Vec<Value> {
    store
        .read_all(ReadAll::from(Position(0), 1000))
        .await
        .expect("read all")
        .events
        .iter()
        .map(|e| e.data_as::<Value>().expect("json"))
        .collect()
}

/// Bob's first event: his whole data (an email) is personal.
async fn append_bob(store: &Stack) {
    store
        .append(
            "user-bob",
            ExpectedVersion::NoStream,
            vec![personal(
                json!({"email": "bob@example.com"}),
                json!({"subject": "bob"}),
            )],
        )
        .await
        .expect("append bob");
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    let mut files = 0;
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files += 1;
                let bytes = std::fs::read(&path).expect("read file");
                if contains_bytes(&bytes, needle.as_bytes()) {
                    found.push(path.display().to_string());
                }
            }
        }
    }
    assert!(
        files >= 3,
        "the search saw the log and the key files ({files} files)"
    );
    found
}

fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The plaintexts this scenario writes as personal values.
const SECRETS: [&str; 4] = [
    "ann@example.com",
    "Ann Example",
    "12 Rose Lane",
    "bob@example.com",
];

fn assert_no_plaintext(dir: &Path) {
    for secret in SECRETS {
        assert_eq!(
            files_containing(dir, secret),
            Vec::<String>::new(),
            "plaintext {secret:?} found on disk"
        );
    }
}

#[tokio::test]
async fn personal_values_are_sealed_on_disk_readable_until_forgotten_and_redacted_after() {
    let dir = tempfile::tempdir().expect("dir");
    let master = MasterKeySource::Default(dir.path().join(KEYS_DIR).join("master.key"))
        .load(true)
        .expect("master key")
        .expect("created");
    let store = open(dir.path(), &master);

    // Given: Ann's fields by pointer (one nested), Bob's whole data, and an event
    // with no personal data.
    store
        .append(
            "user-ann",
            ExpectedVersion::NoStream,
            vec![
                personal(
                    json!({"email": "ann@example.com", "plan": "pro",
                           "address": {"street": "12 Rose Lane", "city": "Ghent"}}),
                    json!({"subject": "ann", "fields": ["/email", "/address/street", "/absent"]}),
                ),
                personal(
                    json!({"name": "Ann Example", "plan": "team"}),
                    json!({"subject": "ann", "fields": ["/name"]}),
                ),
            ],
        )
        .await
        .expect("append ann");
    append_bob(&store).await;
    store
        .append(
            "orders",
            ExpectedVersion::Any,
            vec![EventData::json("Ordered", &json!({"sku": "tea"})).expect("event")],
        )
        .await
        .expect("append plain");

    // Then: nothing of it is on disk in plaintext (what is not personal is, so the
    // search does see the log), and reads see the plaintext.
    assert_no_plaintext(dir.path());
    assert!(!files_containing(dir.path(), "Ghent").is_empty());
    let ann = data_of(&store, "user-ann").await;
    assert_eq!(ann[0]["email"], "ann@example.com");
    assert_eq!(
        ann[0]["address"],
        json!({"street": "12 Rose Lane", "city": "Ghent"})
    );
    assert_eq!(ann[1], json!({"name": "Ann Example", "plan": "team"}));
    assert_eq!(
        data_of(&store, "user-bob").await,
        [json!({"email": "bob@example.com"})]
    );
    assert_eq!(
        all_data(&store).await[2],
        json!({"email": "bob@example.com"})
    );
    let stored = data_of(store.inner().inner(), "user-ann").await;
    assert!(stored[0]["email"]["$encrypted"].is_string(), "{stored:?}");
    assert_eq!(stored[0]["email"]["subject"], "ann");
    assert_eq!(
        stored[0]["plan"], "pro",
        "what is not personal stays as it was"
    );

    // A re-send of an event with personal values, with its id, is idempotent.
    let id = uuid::Uuid::now_v7();
    let resent = || {
        personal(
            json!({"email": "bob@example.com"}),
            json!({"subject": "bob"}),
        )
        .with_id(id)
    };
    let first = store
        .append("user-bob", ExpectedVersion::Any, vec![resent()])
        .await
        .expect("send");
    let again = store
        .append("user-bob", ExpectedVersion::Any, vec![resent()])
        .await
        .expect("re-send");
    assert_eq!(first, again);

    // When: Ann is forgotten.
    let forgotten = forget(&store, "ann").await;
    assert_eq!(forgotten.first_revision.get(), 0);

    // Then: her values read redacted, Bob's and the rest do not change, and the
    // notification is in `$subjects`.
    let redacted = json!({"$redacted": true});
    let ann = data_of(&store, "user-ann").await;
    assert_eq!(
        ann[0],
        json!({"email": redacted, "plan": "pro",
               "address": {"street": redacted, "city": "Ghent"}})
    );
    assert_eq!(ann[1], json!({"name": redacted, "plan": "team"}));
    assert_eq!(
        data_of(&store, "user-bob").await[0],
        json!({"email": "bob@example.com"})
    );
    assert_eq!(all_data(&store).await[0]["email"], redacted);
    let notes = store
        .read_stream("$subjects", ReadStream::forward())
        .await
        .expect("$subjects");
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].event_type, "$subject-forgotten");
    assert_eq!(
        notes[0].data_as::<Value>().expect("json"),
        json!({"subject": "ann"})
    );
    assert_no_plaintext(dir.path());

    // A forgotten subject gets no new personal data.
    let refused = store
        .append(
            "user-ann",
            ExpectedVersion::Any,
            vec![personal(
                json!({"email": "ann@example.org"}),
                json!({"subject": "ann"}),
            )],
        )
        .await;
    assert!(
        matches!(&refused, Err(Error::InvalidEvent { reason }) if reason.contains("forgotten")),
        "{refused:?}"
    );

    // After a restart: still redacted, Bob still readable.
    drop(store);
    let store = open(dir.path(), &master);
    assert_eq!(data_of(&store, "user-ann").await[1]["name"], redacted);
    assert_eq!(
        data_of(&store, "user-bob").await[0]["email"],
        "bob@example.com"
    );
    assert_no_plaintext(dir.path());
}

/// `forget` through the stack's privacy layer.
async fn forget(store: &Stack, subject: &str) -> eventfold_core::AppendResult {
    store
        .inner()
        .layer()
        .forget(store, subject)
        .await
        .expect("forget")
}

#[tokio::test]
async fn a_sealed_value_copied_to_another_event_does_not_open_and_says_so() {
    let dir = tempfile::tempdir().expect("dir");
    let (master, _) = MasterKey::generate().expect("master");
    let store = open(dir.path(), &master);
    store
        .append(
            "user-bob",
            ExpectedVersion::NoStream,
            vec![personal(
                json!({"email": "bob@example.com", "alias": "b"}),
                json!({"subject": "bob", "fields": ["/email", "/alias"]}),
            )],
        )
        .await
        .expect("append");
    let stored = data_of(store.inner().inner(), "user-bob").await;

    // Another event that carries Bob's sealed email, written past the layer.
    let copied = personal(
        json!({"email": stored[0]["email"].clone()}),
        json!({"subject": "bob", "fields": ["/email"]}),
    );
    let log = store.inner().inner();
    log.append_multi(vec![StreamWrite::new(
        "copy",
        ExpectedVersion::NoStream,
        vec![copied],
    )])
    .await
    .expect("raw append");
    let read = store.read_stream("copy", ReadStream::forward()).await;
    assert!(
        matches!(&read, Err(Error::Corrupted { reason, .. })
            if reason.contains("does not open") && reason.contains("/email")),
        "{read:?}"
    );

    // The value copied into the other field of an event fails too (the pointer is
    // bound).
    let moved = personal(
        json!({"alias": stored[0]["email"].clone()}),
        json!({"subject": "bob", "fields": ["/alias"]}),
    );
    log.append_multi(vec![StreamWrite::new(
        "moved",
        ExpectedVersion::NoStream,
        vec![moved],
    )])
    .await
    .expect("raw append");
    assert!(matches!(
        store.read_stream("moved", ReadStream::forward()).await,
        Err(Error::Corrupted { .. })
    ));
    // The original still reads.
    assert_eq!(
        data_of(&store, "user-bob").await[0]["email"],
        "bob@example.com"
    );
}

#[tokio::test]
async fn a_value_sealed_with_an_unknown_cipher_is_an_error_naming_it_on_read_and_on_import() {
    let dir = tempfile::tempdir().expect("dir");
    let (master, _) = MasterKey::generate().expect("master");
    let store = open(dir.path(), &master);
    // Bob's key exists, so the error cannot be a missing key.
    append_bob(&store).await;
    let foreign =
        json!({"$encrypted": "AAAAAAAAAAAAAAAAAAAAAA==", "subject": "bob", "cipher": "rot13"});
    let event = || {
        personal(
            json!({"email": foreign.clone()}),
            json!({"subject": "bob", "fields": ["/email"]}),
        )
    };
    store
        .inner()
        .inner()
        .append_multi(vec![StreamWrite::new(
            "foreign",
            ExpectedVersion::NoStream,
            vec![event()],
        )])
        .await
        .expect("raw append");
    let read = store.read_stream("foreign", ReadStream::forward()).await;
    assert!(
        matches!(&read, Err(Error::Corrupted { reason, .. })
            if reason.contains("'rot13'") && reason.contains("/email")),
        "{read:?}"
    );
    let import = store
        .append("imported", ExpectedVersion::NoStream, vec![event()])
        .await;
    assert!(
        matches!(&import, Err(Error::InvalidEvent { reason }) if reason.contains("'rot13'")),
        "{import:?}"
    );
}

#[tokio::test]
async fn a_wrong_master_key_a_damaged_key_file_and_a_missing_key_are_named_errors() {
    let dir = tempfile::tempdir().expect("dir");
    let (master, _) = MasterKey::generate().expect("master");
    let store = open(dir.path(), &master);
    append_bob(&store).await;
    drop(store);
    let keys_dir = dir.path().join(KEYS_DIR);

    // Another master key: the key store refuses to open, naming the master key.
    let (other, _) = MasterKey::generate().expect("master");
    let wrong = FileKeyStore::open(&keys_dir, other).expect_err("wrong master key");
    assert!(
        matches!(&wrong, Error::InvalidSetting { setting, reason }
            if setting == "master_key" && reason.contains("another master key")),
        "{wrong:?}"
    );

    // A log read with a key store that lacks Bob's key: an error, not a redaction.
    let empty_keys = tempfile::tempdir().expect("dir");
    let keys = FileKeyStore::open(empty_keys.path(), master.clone()).expect("keys");
    let log = LogStore::open(dir.path(), LogOptions::default()).expect("log");
    let stack = log.layer(PrivacyLayer::new(Arc::new(keys)));
    let read = stack.read_stream("user-bob", ReadStream::forward()).await;
    assert!(
        matches!(&read, Err(Error::Corrupted { reason, .. })
            if reason.contains("subject 'bob'") && reason.contains("does not have")),
        "{read:?}"
    );
    drop(stack);

    // One flipped bit in Bob's key record: the key store names the damaged offset.
    let path = keys_dir.join(SUBJECT_KEYS_FILE);
    let mut bytes = std::fs::read(&path).expect("key file");
    let last = bytes.len() - 20;
    bytes[last] ^= 0x01;
    std::fs::write(&path, &bytes).expect("damage");
    let damaged = FileKeyStore::open(&keys_dir, master).expect_err("damaged");
    assert!(
        matches!(&damaged, Error::Corrupted { offset: 72, reason, .. } if reason.contains("checksum")),
        "{damaged:?}"
    );
}

#[tokio::test]
async fn one_append_naming_many_new_subjects_writes_their_keys_together_and_they_survive_a_restart()
{
    let dir = tempfile::tempdir().expect("dir");
    let (master, _) = MasterKey::generate().expect("master");
    let store = open(dir.path(), &master);
    let people = ["ann", "bob", "cat", "ann", "dan"];
    let events = people
        .iter()
        .map(|who| {
            personal(
                json!({"email": format!("{who}@example.com")}),
                json!({"subject": who}),
            )
        })
        .collect();
    store
        .append("signups", ExpectedVersion::NoStream, events)
        .await
        .expect("append");
    // Four subjects (ann named twice): four records after the header.
    let key_file = dir.path().join(KEYS_DIR).join(SUBJECT_KEYS_FILE);
    let records = std::fs::metadata(&key_file).expect("key file").len();
    let header = 72;
    assert_eq!((records - header) % 112, 0);
    assert_eq!((records - header) / 112, 4);

    // A batch naming a forgotten subject writes nothing and says who.
    forget(&store, "cat").await;
    let before = std::fs::metadata(&key_file).expect("key file").len();
    let refused = store
        .append(
            "signups",
            ExpectedVersion::Any,
            vec![
                personal(
                    json!({"email": "eve@example.com"}),
                    json!({"subject": "eve"}),
                ),
                personal(
                    json!({"email": "cat@example.com"}),
                    json!({"subject": "cat"}),
                ),
            ],
        )
        .await
        .expect_err("cat is forgotten");
    assert!(
        refused.to_string().contains("'cat' was forgotten"),
        "{refused}"
    );
    assert_eq!(
        std::fs::metadata(&key_file).expect("key file").len(),
        before
    );
    drop(store);

    // After a restart every key made in the batch still opens its values (the whole
    // data is personal here: cat's reads redacted whole).
    let store = open(dir.path(), &master);
    let email = |who: &str| json!({"email": format!("{who}@example.com")});
    assert_eq!(
        data_of(&store, "signups").await,
        [
            email("ann"),
            email("bob"),
            json!({"$redacted": true}),
            email("ann"),
            email("dan"),
        ]
    );
}

#[tokio::test]
async fn data_that_is_not_json_is_refused_whether_the_fault_is_in_the_personal_value_or_beside_it()
{
    let dir = tempfile::tempdir().expect("dir");
    let (master, _) = MasterKey::generate().expect("master");
    let store = open(dir.path(), &master);
    let marking = br#"{"$personal":{"subject":"ann","fields":["/email"]}}"#;
    for data in [
        // The personal value itself is broken: it must not be sealed as it is.
        &br#"{"email": tru, "plan": "pro"}"#[..],
        br#"{"email": "ann@example.com" , "plan": "pro\u00"}"#,
        b"{\"email\": \"ann\xff@example.com\", \"plan\": \"pro\"}",
        // The rest is broken: the store's own check refuses what was sealed.
        br#"{"email": "ann@example.com", "plan": }"#,
        br#"{"email": "ann@example.com", "plan": "pro"} trailing"#,
        b"{\"email\": \"ann@example.com\", \"plan\": \"\xff\"}",
    ] {
        let refused = store
            .append(
                "signups",
                ExpectedVersion::Any,
                vec![raw_event(data, marking)],
            )
            .await
            .expect_err("not JSON");
        assert!(
            matches!(refused, Error::InvalidEvent { .. }),
            "{}: {refused}",
            String::from_utf8_lossy(data)
        );
    }
    let read = store.read_stream("signups", ReadStream::forward()).await;
    assert!(
        matches!(read, Err(Error::StreamNotFound { .. })),
        "nothing was appended: {read:?}"
    );
}

#[tokio::test]
async fn a_personal_value_named_twice_is_refused_since_one_copy_would_stay_in_plaintext() {
    let dir = tempfile::tempdir().expect("dir");
    let (master, _) = MasterKey::generate().expect("master");
    let store = open(dir.path(), &master);
    let event = |data: &str| {
        let marking = br#"{"$personal":{"subject":"ann","fields":["/contact/email"]}}"#;
        raw_event(data.as_bytes(), marking)
    };
    for data in [
        r#"{"contact": {"email": "ann@old.example", "email": "ann@example.com"}}"#,
        r#"{"contact": {"email": "ann@old.example"}, "contact": {"email": "ann@example.com"}}"#,
    ] {
        let refused = store
            .append("signups", ExpectedVersion::Any, vec![event(data)])
            .await
            .expect_err("named twice");
        assert!(
            refused.to_string().contains("named more than once"),
            "{data}: {refused}"
        );
    }
    assert_no_plaintext(dir.path());
    // A repeated key elsewhere does not matter.
    store
        .append(
            "signups",
            ExpectedVersion::Any,
            vec![event(
                r#"{"contact": {"email": "ann@example.com"}, "note": 1, "note": 2}"#,
            )],
        )
        .await
        .expect("one email");
    assert_eq!(
        data_of(&store, "signups").await,
        vec![json!({"contact": {"email": "ann@example.com"}, "note": 2})]
    );
    assert_no_plaintext(dir.path());
}
