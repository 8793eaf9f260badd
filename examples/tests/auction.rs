//! The auction story: one question asked under release 1, one under release 2 (which
//! adds each seller's unread-questions count), none read; the process crashes; the
//! read model is restored by replaying the events through release 2. The count is 2,
//! folded from the facts; both questions are there; no mail is sent twice. Replaying
//! the audit log of commands instead decides again and mails again. And a disaster: the
//! whole data directory is lost, the log comes back from its archive (the key store from
//! its own backup), the read model is rebuilt, and nobody is mailed twice.

use std::collections::BTreeMap;
use std::path::Path;

use eventfold::projection::EffectState;
use eventfold::{DomainEvent, EventStore, Position, ReadStream};
use eventfold_core::ReadAll;
use eventfold_examples::auction::audit::{Request, replay_commands};
use eventfold_examples::auction::domain::{AuctionEvent, AuctionRejection};
use eventfold_examples::auction::read_model::{QuestionView, Release};
use eventfold_examples::auction::service::{AuctionService, ServiceError};
use eventfold_examples::auction::story::{self, AUCTION, BOB_ASKS, CAT_ASKS, SAM_ANSWERS};
use eventfold_examples::auction::web::WebClient;
use eventfold_examples::auction::world::OutsideWorld;
use serde_json::{Value, json};

const ASK: &str = "/auctions/camera-17/questions";
const SAM: &str = "/sellers/sam/questions";

async fn ask(web: &WebClient, buyer: &str, text: &str) -> Value {
    let (status, body) = web
        .post(ASK, json!({"buyer": buyer, "text": text}))
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    body
}

fn question(id: &str, buyer: &str, text: &str) -> QuestionView {
    QuestionView {
        question_id: id.into(),
        auction: AUCTION.into(),
        buyer: buyer.into(),
        buyer_email: Some(format!("{buyer}@buyers.example")),
        text: text.into(),
        read: false,
        answer: None,
    }
}

/// Each seller's unread questions, counted straight from the stored facts: questions
/// asked minus questions read.
async fn unread_from_facts(store: &dyn EventStore) -> BTreeMap<String, u64> {
    let mut unread = BTreeMap::<String, u64>::new();
    let mut from = Position::START;
    loop {
        let page = store.read_all(ReadAll::from(from, 1_000)).await.unwrap();
        for event in &page.events {
            match AuctionEvent::decode(event).unwrap() {
                Some(AuctionEvent::QuestionAsked { seller, .. }) => {
                    *unread.entry(seller).or_default() += 1;
                }
                Some(AuctionEvent::QuestionRead { seller, .. }) => {
                    *unread.get_mut(&seller).unwrap() -= 1;
                }
                _ => {}
            }
        }
        if page.end_of_log {
            return unread;
        }
        from = page.next;
    }
}

/// The files under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if std::fs::read(&path)
            .unwrap()
            .windows(needle.len())
            .any(|w| w == needle)
        {
            found.push(path);
        }
    }
    found
}

fn has_table(root: &Path, name: &str) -> bool {
    let connection = rusqlite::Connection::open(root.join("service/read-model.sqlite")).unwrap();
    connection
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name = ?1",
            [name],
            |row| row.get::<_, i64>(0),
        )
        .unwrap()
        == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restoring_from_events_counts_from_the_facts_and_mails_nobody_twice() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let data = root.join("service");
    let world = OutsideWorld::open(&root.join("world")).unwrap();

    // Release 1: bob asks; sam is mailed. There is no unread count anywhere.
    let service = AuctionService::open(&data, world.clone(), Release::V1)
        .await
        .unwrap();
    let web = WebClient::new(service.clone());
    let body = ask(&web, "bob", BOB_ASKS).await;
    assert_eq!(body["events"][0]["type"], "QuestionAsked");
    assert_eq!(body["events"][0]["data"]["question_id"], "camera-17-q1");
    assert_eq!(service.deliver_mail().await.unwrap(), 1);
    let (_, page) = web.get(SAM).await.unwrap();
    assert_eq!(page["unread"], Value::Null);
    assert!(!has_table(root, "unread_questions"));
    // Later, sam blocks bob in the accounts service.
    world.accounts.block("sam", "bob").unwrap();
    drop(web);
    service.shut_down().await.unwrap();

    // Release 2 starts on the same data: a new read model is built from the events.
    let service = AuctionService::open(&data, world.clone(), Release::V2)
        .await
        .unwrap();
    assert_eq!(service.live_generation(), Some(2));
    assert_eq!(
        service.seller_questions("sam").await.unwrap().unread,
        Some(1)
    );
    let web = WebClient::new(service.clone());
    let body = ask(&web, "cat", CAT_ASKS).await;
    assert_eq!(body["events"][0]["data"]["question_id"], "camera-17-q2");
    let (_, page) = web.get(SAM).await.unwrap();
    assert_eq!(page["unread"], 2);
    // Cat's mail is recorded with the read model, and not sent yet when ...
    assert_eq!(service.mail_waiting().await.unwrap(), 1);
    assert_eq!(world.mail.sent().unwrap().len(), 1);

    // ... the process crashes.
    drop(web);
    service.crash().await.unwrap();

    // Restart, and restore the read model by replaying every event through release 2.
    let service = AuctionService::open(&data, world.clone(), Release::V2)
        .await
        .unwrap();
    assert_eq!(
        service.live_generation(),
        Some(2),
        "resumed after the crash"
    );
    assert_eq!(service.restore_read_model().await.unwrap(), 3);
    assert!(
        !has_table(root, "questions_g2"),
        "the old generation is gone"
    );

    let restored = service.seller_questions("sam").await.unwrap();
    assert_eq!(restored.unread, Some(2));
    let facts = unread_from_facts(service.store().as_ref()).await;
    assert_eq!(restored.unread, facts.get("sam").copied());
    assert_eq!(
        restored.questions,
        [
            question("camera-17-q1", "bob", BOB_ASKS),
            question("camera-17-q2", "cat", CAT_ASKS),
        ]
    );

    // The replay recorded no mail; cat's, recorded before the crash, goes out once.
    assert_eq!(service.outbox().await.unwrap().len(), 2);
    assert_eq!(service.deliver_mail().await.unwrap(), 1);
    assert_eq!(service.deliver_mail().await.unwrap(), 0);
    assert!(
        service
            .outbox()
            .await
            .unwrap()
            .iter()
            .all(|mail| mail.state == EffectState::Done)
    );
    let mails = world.mail.sent().unwrap();
    let bodies: Vec<&str> = mails.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, [BOB_ASKS, CAT_ASKS], "one mail per question");
    assert!(mails.iter().all(|m| m.to == "sam@sellers.example"));
    assert_ne!(mails[0].idempotency_key, mails[1].idempotency_key);

    // The count follows the facts from here on: answering bob reads his question.
    let web = WebClient::new(service.clone());
    let (status, body) = web
        .post(
            "/auctions/camera-17/questions/camera-17-q1/answer",
            json!({"seller": "sam", "answer": SAM_ANSWERS}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let types: Vec<&str> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["QuestionRead", "QuestionAnswered"]);
    let (_, page) = web.get(SAM).await.unwrap();
    assert_eq!(page["unread"], 1);
    drop(web);

    // Bob is forgotten: the read model drops his email, the log's copy reads redacted,
    // cat's stays, and no file of the event log or the key store ever holds bob's
    // address (the read model's database is the only file that does).
    let holding = files_containing(&data, b"bob@buyers.example");
    assert!(!holding.is_empty(), "the read model keeps bob's email");
    assert!(
        holding.iter().all(|path| path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("read-model.sqlite")),
        "{holding:?}"
    );
    service.forget_buyer("bob").await.unwrap();
    let emails: Vec<Option<String>> = service
        .seller_questions("sam")
        .await
        .unwrap()
        .questions
        .into_iter()
        .map(|q| q.buyer_email)
        .collect();
    assert_eq!(emails, [None, Some("cat@buyers.example".into())]);
    let stored = service
        .store()
        .read_stream("auction-camera-17", ReadStream::forward())
        .await
        .unwrap();
    let asked: Vec<Value> = stored
        .iter()
        .filter(|e| e.event_type == "QuestionAsked")
        .map(|e| e.data_as::<Value>().unwrap()["buyer_email"].clone())
        .collect();
    assert_eq!(
        asked,
        [json!({"$redacted": true}), json!("cat@buyers.example")]
    );
    assert!(files_containing(&data.join("events"), b"bob@buyers.example").is_empty());
    assert!(files_containing(&data.join("keys"), b"bob@buyers.example").is_empty());
    // The read model overwrites what it deletes; once its write-ahead log is emptied,
    // no file of the service holds bob's address any more.
    service.checkpoint_read_model().await.unwrap();
    let holding = files_containing(&data, b"bob@buyers.example");
    assert!(holding.is_empty(), "{holding:?}");
    let entries = service.audit_log().entries().unwrap();
    service.shut_down().await.unwrap();

    // The wrong way: replay the audit log of commands through today's service into an
    // empty store. Today's code asks today's accounts service: bob is blocked now.
    assert_eq!(
        entries.iter().map(|e| &e.request).collect::<Vec<_>>(),
        [
            &Request::AskQuestion {
                auction: AUCTION.into(),
                buyer: "bob".into(),
                text: BOB_ASKS.into()
            },
            &Request::AskQuestion {
                auction: AUCTION.into(),
                buyer: "cat".into(),
                text: CAT_ASKS.into()
            },
            &Request::AnswerQuestion {
                auction: AUCTION.into(),
                question_id: "camera-17-q1".into(),
                seller: "sam".into(),
                answer: SAM_ANSWERS.into()
            },
        ]
    );
    let what_if = AuctionService::open(&root.join("what-if"), world.clone(), Release::V2)
        .await
        .unwrap();
    let outcomes = replay_commands(&entries, &what_if).await;
    // Bob's question, accepted when he asked it, is refused.
    assert!(matches!(
        &outcomes[0].1,
        Err(ServiceError::Rejected(AuctionRejection::BuyerBlocked { buyer, seller }))
            if buyer == "bob" && seller == "sam"
    ));
    // Cat's question gets another number, and sam's answer to bob lands on it.
    let cat = outcomes[1].1.as_ref().unwrap();
    assert!(matches!(
        &cat.events[..],
        [AuctionEvent::QuestionAsked { question_id, buyer, .. }]
            if question_id == "camera-17-q1" && buyer == "cat"
    ));
    assert!(outcomes[2].1.is_ok());
    let replayed = what_if.seller_questions("sam").await.unwrap();
    assert_eq!(
        replayed.questions,
        [QuestionView {
            answer: Some(SAM_ANSWERS.into()),
            read: true,
            ..question("camera-17-q1", "cat", CAT_ASKS)
        }]
    );
    assert_eq!(replayed.unread, Some(0), "the events say 1");
    // And cat's question is mailed to sam a second time.
    assert_eq!(what_if.deliver_mail().await.unwrap(), 1);
    let bodies: Vec<String> = world
        .mail
        .sent()
        .unwrap()
        .into_iter()
        .map(|m| m.body)
        .collect();
    assert_eq!(bodies, [BOB_ASKS, CAT_ASKS, CAT_ASKS]);
    what_if.shut_down().await.unwrap();

    // The events were never touched: release 2 restores the same page again.
    let service = AuctionService::open(&data, world, Release::V2)
        .await
        .unwrap();
    service.restore_read_model().await.unwrap();
    let page = service.seller_questions("sam").await.unwrap();
    assert_eq!(page.unread, Some(1));
    assert_eq!(page.questions.len(), 2);
    assert_eq!(
        page.questions[0].buyer_email, None,
        "forgotten, also after a rebuild"
    );
    assert_eq!(service.deliver_mail().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_data_directory_comes_back_from_the_archive_and_mails_nobody_twice() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let data = root.join("service");
    let world = OutsideWorld::open(&root.join("world")).unwrap();
    let service = AuctionService::open(&data, world.clone(), Release::V2)
        .await
        .unwrap();
    let web = WebClient::new(service.clone());
    ask(&web, "bob", BOB_ASKS).await;
    ask(&web, "cat", CAT_ASKS).await;
    assert_eq!(service.deliver_mail().await.unwrap(), 2);
    let (status, body) = web
        .post(
            "/auctions/camera-17/questions/camera-17-q1/answer",
            json!({"seller": "sam", "answer": SAM_ANSWERS}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let before = service.seller_questions("sam").await.unwrap();
    assert_eq!(before.unread, Some(1));
    drop(web);
    service.shut_down().await.unwrap();

    // The nightly archive of the log, and the key store's own backup, elsewhere.
    let bucket = root.join("bucket");
    let location =
        eventfold_archive::ArchiveLocation::parse(&format!("file://{}", bucket.display())).unwrap();
    let log = eventfold_log::LogStore::open_read_only(data.join("events")).unwrap();
    let archived = eventfold_archive::archive(&log, &location, &mut |_| {})
        .await
        .unwrap();
    let head = log.event_count();
    assert_eq!(archived.end_position, head);
    log.close();
    let keys_backup = root.join("keys-backup");
    copy_dir(&data.join("keys"), &keys_backup);

    // The disaster: the service's whole data directory is gone, read model included.
    std::fs::remove_dir_all(&data).unwrap();
    let restored = eventfold_archive::restore(&location, &data.join("events"), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(restored.end_position, head);
    copy_dir(&keys_backup, &data.join("keys"));

    // Release 2 starts on the restored log: a new read model is built from the events.
    let service = AuctionService::open(&data, world.clone(), Release::V2)
        .await
        .unwrap();
    let after = service.seller_questions("sam").await.unwrap();
    assert_eq!(
        after.unread,
        Some(1),
        "the count, folded from the facts again"
    );
    assert_eq!(after.questions, before.questions);
    assert_eq!(
        after.questions[1].buyer_email.as_deref(),
        Some("cat@buyers.example"),
        "personal values open with the key store's backup"
    );
    // The effect ledger came back with the log: both mails are known as sent.
    assert_eq!(service.deliver_mail().await.unwrap(), 0);
    let bodies: Vec<String> = world
        .mail
        .sent()
        .unwrap()
        .into_iter()
        .map(|m| m.body)
        .collect();
    assert_eq!(bodies, [BOB_ASKS, CAT_ASKS], "nobody is mailed twice");
    // And the service goes on where the archive ended.
    let web = WebClient::new(service.clone());
    let body = ask(&web, "dan", "Does it come with a strap?").await;
    assert_eq!(body["events"][0]["data"]["question_id"], "camera-17-q3");
    assert_eq!(service.deliver_mail().await.unwrap(), 1);
    drop(web);
    service.shut_down().await.unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_app_explains_what_it_refuses() {
    let root = tempfile::tempdir().unwrap();
    let world = OutsideWorld::open(&root.path().join("world")).unwrap();
    world.accounts.block("sam", "eve").unwrap();
    let service = AuctionService::open(&root.path().join("service"), world, Release::V2)
        .await
        .unwrap();
    let web = WebClient::new(service.clone());

    let (status, body) = web
        .post(ASK, json!({"buyer": "eve", "text": "Hello?"}))
        .await
        .unwrap();
    assert_eq!(
        (status.as_u16(), &body["error"]),
        (403, &json!("buyer_blocked"))
    );
    let (status, body) = web
        .post(
            "/auctions/no-such-auction/questions",
            json!({"buyer": "bob", "text": "Hello?"}),
        )
        .await
        .unwrap();
    assert_eq!(
        (status.as_u16(), &body["error"]),
        (404, &json!("unknown_auction"))
    );
    ask(&web, "bob", BOB_ASKS).await;
    let (status, body) = web
        .post(
            "/auctions/camera-17/questions/camera-17-q1/read",
            json!({"seller": "ann"}),
        )
        .await
        .unwrap();
    assert_eq!(
        (status.as_u16(), &body["error"]),
        (409, &json!("not_the_seller"))
    );
    // Reading twice is harmless: the second read decides nothing.
    for _ in 0..2 {
        let (status, _) = web
            .post(
                "/auctions/camera-17/questions/camera-17-q1/read",
                json!({"seller": "sam"}),
            )
            .await
            .unwrap();
        assert_eq!(status, 200);
    }
    let (_, page) = web.get(SAM).await.unwrap();
    assert_eq!(
        (&page["unread"], &page["questions"][0]["read"]),
        (&json!(0), &json!(true))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_tells_the_story_end_to_end() {
    let root = tempfile::tempdir().unwrap();
    let mut narration = Vec::new();
    let ending = story::run(root.path(), &mut narration).await.unwrap();
    assert_eq!(
        ending,
        story::Ending {
            unread_after_restore: Some(2),
            questions_after_restore: 2,
            mails_after_restore: 2,
            mails_after_command_replay: 3,
        }
    );
    let narration = String::from_utf8(narration).unwrap();
    assert!(
        narration.contains("rejected: sam has blocked bob"),
        "{narration}"
    );
}
