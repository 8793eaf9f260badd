//! The questions of one auction: buyers ask, the seller reads and answers.
//!
//! `decide` and `evolve` are pure. What the outside world says (who sells the auction,
//! whether the seller blocked the buyer) is looked up by the service and arrives on the
//! command; what was decided is stored on the events.

use std::fmt;

use eventfold::{Aggregate, Decision, DomainEvent, EventType, Personal, PersonalData};
use serde::{Deserialize, Serialize};

/// The facts of the auction questions service. Each is one thing that happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum AuctionEvent {
    /// A buyer asked the seller a question about an auction.
    QuestionAsked {
        question_id: String,
        auction: String,
        seller: String,
        buyer: String,
        /// Where the seller's reply goes: the buyer's personal data, sealed in the log
        /// under the buyer's key and redacted once the buyer is forgotten.
        buyer_email: Personal<String>,
        text: String,
    },
    /// The seller opened the question.
    QuestionRead {
        question_id: String,
        auction: String,
        seller: String,
    },
    /// The seller answered the question.
    QuestionAnswered {
        question_id: String,
        auction: String,
        seller: String,
        buyer: String,
        answer: String,
    },
}

impl DomainEvent for AuctionEvent {
    const TYPES: &'static [EventType] = &[
        EventType::new("QuestionAsked", 1),
        EventType::new("QuestionRead", 1),
        EventType::new("QuestionAnswered", 1),
    ];

    /// The buyer's email on `QuestionAsked` belongs to the buyer (subject: the buyer's
    /// account id).
    fn personal(&self) -> Option<PersonalData> {
        match self {
            AuctionEvent::QuestionAsked { buyer, .. } => {
                Some(PersonalData::new(buyer.clone()).field("/buyer_email"))
            }
            AuctionEvent::QuestionRead { .. } | AuctionEvent::QuestionAnswered { .. } => None,
        }
    }
}

/// What the auction is asked to do, with what the service learnt from the outside
/// world when the command arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuctionCommand {
    /// A buyer asks a question.
    Ask {
        auction: String,
        /// Who sells the auction, from the catalogue.
        seller: String,
        buyer: String,
        /// The buyer's email, from the accounts service.
        buyer_email: String,
        text: String,
        /// Whether the seller had blocked this buyer, from the accounts service.
        buyer_blocked: bool,
    },
    /// The seller opens a question.
    Read { question_id: String, seller: String },
    /// The seller answers a question (reading it, if not done yet).
    Answer {
        question_id: String,
        seller: String,
        answer: String,
    },
}

/// Why the auction refuses a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuctionRejection {
    /// The seller has blocked this buyer.
    BuyerBlocked { buyer: String, seller: String },
    /// A question or an answer needs some text.
    EmptyText,
    /// The auction has no such question.
    UnknownQuestion { question_id: String },
    /// Only the seller reads and answers questions.
    NotTheSeller { question_id: String, seller: String },
    /// A question is answered once.
    AlreadyAnswered { question_id: String },
}

impl AuctionRejection {
    /// A stable, machine-readable code for clients.
    pub fn code(&self) -> &'static str {
        match self {
            AuctionRejection::BuyerBlocked { .. } => "buyer_blocked",
            AuctionRejection::EmptyText => "empty_text",
            AuctionRejection::UnknownQuestion { .. } => "unknown_question",
            AuctionRejection::NotTheSeller { .. } => "not_the_seller",
            AuctionRejection::AlreadyAnswered { .. } => "already_answered",
        }
    }
}

impl fmt::Display for AuctionRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuctionRejection::BuyerBlocked { buyer, seller } => {
                write!(f, "{seller} has blocked {buyer}")
            }
            AuctionRejection::EmptyText => write!(f, "the text is empty"),
            AuctionRejection::UnknownQuestion { question_id } => {
                write!(f, "there is no question {question_id}")
            }
            AuctionRejection::NotTheSeller {
                question_id,
                seller,
            } => write!(f, "{seller} does not sell the auction of {question_id}"),
            AuctionRejection::AlreadyAnswered { question_id } => {
                write!(f, "{question_id} is already answered")
            }
        }
    }
}

/// One question, as the auction remembers it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Question {
    id: String,
    seller: String,
    buyer: String,
    read: bool,
    answered: bool,
}

/// The questions of one auction (stream `auction-<id>`).
#[derive(Debug, Default)]
pub struct Auction {
    /// In the order they were asked; question `n` has id `<auction>-q<n>`.
    questions: Vec<Question>,
}

impl Auction {
    fn question(&self, question_id: &str) -> Result<&Question, AuctionRejection> {
        self.questions
            .iter()
            .find(|q| q.id == question_id)
            .ok_or_else(|| AuctionRejection::UnknownQuestion {
                question_id: question_id.to_string(),
            })
    }

    fn seller_question(
        &self,
        question_id: &str,
        seller: &str,
    ) -> Result<&Question, AuctionRejection> {
        let question = self.question(question_id)?;
        if question.seller != seller {
            return Err(AuctionRejection::NotTheSeller {
                question_id: question_id.to_string(),
                seller: seller.to_string(),
            });
        }
        Ok(question)
    }
}

/// The stream of an auction's questions.
pub fn stream_of(auction: &str) -> String {
    format!("auction-{auction}")
}

impl Aggregate for Auction {
    const NAME: &'static str = "auction";
    type Command = AuctionCommand;
    type Event = AuctionEvent;
    type Rejection = AuctionRejection;

    fn decide(&self, command: &AuctionCommand) -> Result<Decision<AuctionEvent>, AuctionRejection> {
        match command {
            AuctionCommand::Ask {
                auction,
                seller,
                buyer,
                buyer_email,
                text,
                buyer_blocked,
            } => {
                if *buyer_blocked {
                    return Err(AuctionRejection::BuyerBlocked {
                        buyer: buyer.clone(),
                        seller: seller.clone(),
                    });
                }
                if text.trim().is_empty() {
                    return Err(AuctionRejection::EmptyText);
                }
                // Numbered in the order asked: the number is decided here, once.
                let question_id = format!("{auction}-q{}", self.questions.len() + 1);
                Ok(Decision::event(AuctionEvent::QuestionAsked {
                    question_id,
                    auction: auction.clone(),
                    seller: seller.clone(),
                    buyer: buyer.clone(),
                    buyer_email: Personal::Known(buyer_email.clone()),
                    text: text.clone(),
                }))
            }
            AuctionCommand::Read {
                question_id,
                seller,
            } => {
                let question = self.seller_question(question_id, seller)?;
                if question.read {
                    return Ok(Decision::none());
                }
                Ok(Decision::event(read(question, question_id)))
            }
            AuctionCommand::Answer {
                question_id,
                seller,
                answer,
            } => {
                let question = self.seller_question(question_id, seller)?;
                if question.answered {
                    return Err(AuctionRejection::AlreadyAnswered {
                        question_id: question_id.clone(),
                    });
                }
                if answer.trim().is_empty() {
                    return Err(AuctionRejection::EmptyText);
                }
                let mut decision = Decision::none();
                if !question.read {
                    decision = decision.emit(read(question, question_id));
                }
                Ok(decision.emit(AuctionEvent::QuestionAnswered {
                    question_id: question_id.clone(),
                    auction: auction_of(question_id),
                    seller: seller.clone(),
                    buyer: question.buyer.clone(),
                    answer: answer.clone(),
                }))
            }
        }
    }

    fn evolve(&mut self, event: &AuctionEvent) {
        match event {
            AuctionEvent::QuestionAsked {
                question_id,
                seller,
                buyer,
                ..
            } => self.questions.push(Question {
                id: question_id.clone(),
                seller: seller.clone(),
                buyer: buyer.clone(),
                read: false,
                answered: false,
            }),
            AuctionEvent::QuestionRead { question_id, .. } => {
                if let Some(q) = self.questions.iter_mut().find(|q| &q.id == question_id) {
                    q.read = true;
                }
            }
            AuctionEvent::QuestionAnswered { question_id, .. } => {
                if let Some(q) = self.questions.iter_mut().find(|q| &q.id == question_id) {
                    q.answered = true;
                }
            }
        }
    }
}

fn read(question: &Question, question_id: &str) -> AuctionEvent {
    AuctionEvent::QuestionRead {
        question_id: question_id.to_string(),
        auction: auction_of(question_id),
        seller: question.seller.clone(),
    }
}

/// The auction a question id belongs to (`camera-17-q2` → `camera-17`).
fn auction_of(question_id: &str) -> String {
    question_id
        .rsplit_once("-q")
        .map_or(question_id, |(auction, _)| auction)
        .to_string()
}

#[cfg(test)]
mod tests {
    use eventfold::testkit::Scenario;

    use super::*;

    fn asked(n: usize, buyer: &str) -> AuctionEvent {
        AuctionEvent::QuestionAsked {
            question_id: format!("camera-17-q{n}"),
            auction: "camera-17".into(),
            seller: "sam".into(),
            buyer: buyer.into(),
            buyer_email: Personal::Known(format!("{buyer}@buyers.example")),
            text: "Does the shutter work?".into(),
        }
    }

    fn ask(buyer: &str, buyer_blocked: bool) -> AuctionCommand {
        AuctionCommand::Ask {
            auction: "camera-17".into(),
            seller: "sam".into(),
            buyer: buyer.into(),
            buyer_email: format!("{buyer}@buyers.example"),
            text: "Does the shutter work?".into(),
            buyer_blocked,
        }
    }

    #[test]
    fn given_one_question_when_another_is_asked_then_it_is_number_two() {
        Scenario::<Auction>::given([asked(1, "bob")])
            .when(ask("cat", false))
            .then([asked(2, "cat")]);
    }

    #[test]
    fn given_nothing_when_a_blocked_buyer_asks_then_it_is_rejected() {
        Scenario::<Auction>::given([])
            .when(ask("bob", true))
            .then_rejected(AuctionRejection::BuyerBlocked {
                buyer: "bob".into(),
                seller: "sam".into(),
            });
    }

    #[test]
    fn given_an_unread_question_when_it_is_answered_then_it_is_read_and_answered() {
        Scenario::<Auction>::given([asked(1, "bob")])
            .when(AuctionCommand::Answer {
                question_id: "camera-17-q1".into(),
                seller: "sam".into(),
                answer: "Yes".into(),
            })
            .then([
                AuctionEvent::QuestionRead {
                    question_id: "camera-17-q1".into(),
                    auction: "camera-17".into(),
                    seller: "sam".into(),
                },
                AuctionEvent::QuestionAnswered {
                    question_id: "camera-17-q1".into(),
                    auction: "camera-17".into(),
                    seller: "sam".into(),
                    buyer: "bob".into(),
                    answer: "Yes".into(),
                },
            ]);
    }

    #[test]
    fn given_a_read_question_when_it_is_read_again_then_nothing_happens() {
        let read = AuctionEvent::QuestionRead {
            question_id: "camera-17-q1".into(),
            auction: "camera-17".into(),
            seller: "sam".into(),
        };
        Scenario::<Auction>::given([asked(1, "bob"), read])
            .when(AuctionCommand::Read {
                question_id: "camera-17-q1".into(),
                seller: "sam".into(),
            })
            .then([]);
    }
}
