//! The story `cargo run -p eventfold-examples --example auction` tells, step by step.
//! `examples/tests/auction.rs` checks each claim of it.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, ensure};
use eventfold::{EventStore, ReadStream};
use serde_json::{Value, json};

use super::audit::replay_commands;
use super::domain::stream_of;
use super::read_model::{Release, SellerQuestions};
use super::service::AuctionService;
use super::web::WebClient;
use super::world::OutsideWorld;

/// The auction of the story, sold by sam.
pub const AUCTION: &str = "camera-17";
/// Bob's question, asked under release 1.
pub const BOB_ASKS: &str = "Does the shutter fire at every speed?";
/// Cat's question, asked under release 2.
pub const CAT_ASKS: &str = "Is there fungus in the lens?";
/// Sam's answer to bob.
pub const SAM_ANSWERS: &str = "Yes, from 1 s to 1/1000 s.";

/// What the story ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    /// Sam's unread count right after the restore.
    pub unread_after_restore: Option<u64>,
    /// Sam's questions right after the restore.
    pub questions_after_restore: usize,
    /// Mails sent when the restored service had delivered its outbox.
    pub mails_after_restore: usize,
    /// Mails sent once the command log was replayed as well (the wrong way).
    pub mails_after_command_replay: usize,
}

/// Runs the whole story in `root` (`root/service`: the service's data directory,
/// `root/world`: the outside world, `root/what-if`: the command replay) and narrates
/// it to `out`.
pub async fn run(root: &Path, out: &mut dyn Write) -> anyhow::Result<Ending> {
    let data = root.join("service");
    let world = OutsideWorld::open(&root.join("world"))?;
    let ask_uri = format!("/auctions/{AUCTION}/questions");
    let sam_uri = "/sellers/sam/questions";

    writeln!(out, "== Release 1: buyers ask, sellers are mailed ==")?;
    let service = AuctionService::open(&data, world.clone(), Release::V1).await?;
    let web = WebClient::new(service.clone());
    writeln!(out, "data directory: {}", data.display())?;
    let (status, body) = web
        .post(&ask_uri, json!({"buyer": "bob", "text": BOB_ASKS}))
        .await?;
    writeln!(out, "bob: POST {ask_uri} → {status} {}", events(&body))?;
    ensure!(status == 201, "bob's question was refused: {body}");
    writeln!(
        out,
        "mail robot: {} mail sent",
        service.deliver_mail().await?
    )?;
    let (_, page) = web.get(sam_uri).await?;
    writeln!(out, "sam's page: {}", page_summary(&page)?)?;
    world.accounts.block("sam", "bob")?;
    writeln!(
        out,
        "sam blocks bob in the accounts service (another system)"
    )?;
    drop(web);
    service.shut_down().await?;
    writeln!(out, "release 1 stops\n")?;

    writeln!(
        out,
        "== Release 2: the read model also keeps each seller's unread-questions count =="
    )?;
    let service = AuctionService::open(&data, world.clone(), Release::V2).await?;
    writeln!(
        out,
        "release 2 starts; its projections differ, so the read model is rebuilt from the events \
         beside the old one and swapped in (generation {})",
        service.live_generation().unwrap_or_default()
    )?;
    let web = WebClient::new(service.clone());
    let (_, page) = web.get(sam_uri).await?;
    writeln!(out, "sam's page: {}", page_summary(&page)?)?;
    writeln!(
        out,
        "  (release 1 never counted anything: the count is folded from the stored facts)"
    )?;
    let (status, body) = web
        .post(&ask_uri, json!({"buyer": "cat", "text": CAT_ASKS}))
        .await?;
    writeln!(out, "cat: POST {ask_uri} → {status} {}", events(&body))?;
    ensure!(status == 201, "cat's question was refused: {body}");
    let (_, page) = web.get(sam_uri).await?;
    writeln!(out, "sam's page: {}", page_summary(&page)?)?;
    writeln!(
        out,
        "mails waiting in the outbox: {}",
        service.mail_waiting().await?
    )?;
    drop(web);
    service.crash().await?;
    writeln!(
        out,
        "*** the process crashes before the mail robot runs: no shutdown, nothing flushed ***\n"
    )?;

    writeln!(
        out,
        "== Restart: restore the read model by replaying the events =="
    )?;
    let service = AuctionService::open(&data, world.clone(), Release::V2).await?;
    let generation = service.restore_read_model().await?;
    writeln!(
        out,
        "release 2 reopens {} and rebuilds the read model from position 0 (generation {generation})",
        data.display()
    )?;
    let restored: SellerQuestions = service.seller_questions("sam").await?;
    writeln!(
        out,
        "sam's page: {}",
        page_summary(&serde_json::to_value(&restored)?)?
    )?;
    let sent = service.deliver_mail().await?;
    writeln!(
        out,
        "mail robot: {sent} mail sent (cat's, waiting since before the crash; the replay recorded none)"
    )?;
    let mails_after_restore = world.mail.sent()?.len();
    writeln!(
        out,
        "the mail server has sent {mails_after_restore} mails, one per question:"
    )?;
    for mail in world.mail.sent()? {
        writeln!(out, "  to {}: {}", mail.to, mail.subject)?;
    }

    let web = WebClient::new(service.clone());
    let (status, body) = web
        .post(
            &format!("/auctions/{AUCTION}/questions/{AUCTION}-q1/answer"),
            json!({"seller": "sam", "answer": SAM_ANSWERS}),
        )
        .await?;
    writeln!(out, "sam answers {AUCTION}-q1 → {status} {}", events(&body))?;
    let (_, page) = web.get(sam_uri).await?;
    writeln!(out, "sam's page: {}\n", page_summary(&page)?)?;
    drop(web);

    writeln!(out, "== Bob asks to be forgotten ==")?;
    writeln!(
        out,
        "reply-to addresses on sam's page: {}",
        reply_to(&service).await?
    )?;
    let position = service.forget_buyer("bob").await?;
    writeln!(
        out,
        "forget bob → bob's key is destroyed; $subject-forgotten is appended to $subjects \
         (position {position}) and the read model drops its copy"
    )?;
    writeln!(
        out,
        "reply-to addresses on sam's page: {}",
        reply_to(&service).await?
    )?;
    let stored = service
        .store()
        .read_stream(&stream_of(AUCTION), ReadStream::forward().limit(1))
        .await?;
    let data: Value = stored
        .first()
        .context("the auction's first event")?
        .data_as()?;
    writeln!(
        out,
        "the stored QuestionAsked {AUCTION}-q1 now reads \"buyer_email\": {} (the log never changed: \
         its copy is sealed under a key that no longer exists)\n",
        data["buyer_email"]
    )?;
    let entries = service.audit_log().entries()?;
    service.shut_down().await?;

    writeln!(
        out,
        "== What if we had replayed the audit log of commands instead? =="
    )?;
    writeln!(
        out,
        "{} commands in the audit log; sent again to today's service, on an empty store:",
        entries.len()
    )?;
    let what_if = AuctionService::open(&root.join("what-if"), world.clone(), Release::V2).await?;
    for (request, outcome) in replay_commands(&entries, &what_if).await {
        let outcome = match outcome {
            Ok(handled) => format!("accepted: {}", events(&json!({ "events": handled.events }))),
            Err(error) => error.to_string(),
        };
        writeln!(out, "  {} → {outcome}", serde_json::to_string(&request)?)?;
    }
    writeln!(
        out,
        "mail robot: {} mail sent again",
        what_if.deliver_mail().await?
    )?;
    let replayed = what_if.seller_questions("sam").await?;
    writeln!(
        out,
        "sam's page rebuilt from commands: {}",
        page_summary(&serde_json::to_value(&replayed)?)?
    )?;
    let mails_after_command_replay = world.mail.sent()?.len();
    writeln!(
        out,
        "the mail server has now sent {mails_after_command_replay} mails: cat's question twice"
    )?;
    what_if.shut_down().await?;
    writeln!(
        out,
        "\nEvents are what was decided; commands are requests, decided again by today's code."
    )?;

    Ok(Ending {
        unread_after_restore: restored.unread,
        questions_after_restore: restored.questions.len(),
        mails_after_restore,
        mails_after_command_replay,
    })
}

/// `camera-17-q1 → bob@buyers.example, …`: where sam's replies would go.
async fn reply_to(service: &AuctionService) -> anyhow::Result<String> {
    let page = service.seller_questions("sam").await?;
    let listed: Vec<String> = page
        .questions
        .iter()
        .map(|q| {
            let to = q.buyer_email.as_deref().unwrap_or("(forgotten)");
            format!("{} → {to}", q.question_id)
        })
        .collect();
    Ok(listed.join(", "))
}

/// `QuestionAsked camera-17-q1, …` from a command's answer.
fn events(body: &Value) -> String {
    let Some(events) = body["events"].as_array() else {
        return body.to_string();
    };
    events
        .iter()
        .map(|event| {
            let id = event["data"]["question_id"].as_str().unwrap_or_default();
            format!("{} {id}", event["type"].as_str().unwrap_or_default())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `unread 2; camera-17-q1 (bob, unread), …` from a seller's page.
fn page_summary(page: &Value) -> anyhow::Result<String> {
    let questions = page["questions"]
        .as_array()
        .context("a seller's page lists questions")?;
    let unread = match page["unread"].as_u64() {
        Some(n) => format!("unread count {n}"),
        None => "no unread count".to_string(),
    };
    let listed: Vec<String> = questions
        .iter()
        .map(|q| {
            let state = if q["answer"].is_string() {
                format!("answered \"{}\"", q["answer"].as_str().unwrap_or_default())
            } else if q["read"] == true {
                "read".to_string()
            } else {
                "unread".to_string()
            };
            format!(
                "{} from {} \"{}\" ({state})",
                q["question_id"].as_str().unwrap_or_default(),
                q["buyer"].as_str().unwrap_or_default(),
                q["text"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    Ok(format!("{unread}; questions: {}", listed.join(", ")))
}
