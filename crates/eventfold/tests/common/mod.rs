//! The test domain: bank accounts, a transfer over two account streams, and account
//! limits sharing the account stream.
#![allow(dead_code)]

pub mod hooked;

use std::collections::BTreeMap;
use std::fmt;

use eventfold::{Aggregate, Decision, DomainEvent, EventType};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum AccountEvent {
    AccountOpened { owner: String },
    MoneyDeposited { account: String, cents: u64 },
    MoneyWithdrawn { account: String, cents: u64 },
    AccountClosed,
}

impl DomainEvent for AccountEvent {
    const TYPES: &'static [EventType] = &[
        EventType::new("AccountOpened", 1),
        EventType::new("MoneyDeposited", 1),
        EventType::new("MoneyWithdrawn", 1),
        EventType::new("AccountClosed", 1),
    ];
}

pub fn deposited(account: &str, cents: u64) -> AccountEvent {
    AccountEvent::MoneyDeposited {
        account: account.into(),
        cents,
    }
}

pub fn withdrawn(account: &str, cents: u64) -> AccountEvent {
    AccountEvent::MoneyWithdrawn {
        account: account.into(),
        cents,
    }
}

pub fn opened(owner: &str) -> AccountEvent {
    AccountEvent::AccountOpened {
        owner: owner.into(),
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum AccountCommand {
    Open { owner: String },
    Deposit { account: String, cents: u64 },
    Withdraw { account: String, cents: u64 },
}

pub fn deposit(account: &str, cents: u64) -> AccountCommand {
    AccountCommand::Deposit {
        account: account.into(),
        cents,
    }
}

pub fn withdraw(account: &str, cents: u64) -> AccountCommand {
    AccountCommand::Withdraw {
        account: account.into(),
        cents,
    }
}

pub fn open(owner: &str) -> AccountCommand {
    AccountCommand::Open {
        owner: owner.into(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountRejection {
    NotOpen,
    AlreadyOpen,
    InsufficientFunds { balance: u64, requested: u64 },
}

impl fmt::Display for AccountRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccountRejection::NotOpen => f.write_str("the account is not open"),
            AccountRejection::AlreadyOpen => f.write_str("the account is already open"),
            AccountRejection::InsufficientFunds { balance, requested } => {
                write!(
                    f,
                    "insufficient funds: balance {balance}, requested {requested}"
                )
            }
        }
    }
}

/// One account; its stream is `account-<id>`.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub owner: Option<String>,
    pub balance: u64,
    /// How many events it evolved from (to see what a load read).
    pub events_seen: u64,
}

impl Aggregate for Account {
    const NAME: &'static str = "account";
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Rejection = AccountRejection;

    fn decide(&self, command: &AccountCommand) -> Result<Decision<AccountEvent>, AccountRejection> {
        match command {
            AccountCommand::Open { owner } => match self.owner {
                Some(_) => Err(AccountRejection::AlreadyOpen),
                None => Ok(Decision::event(opened(owner))),
            },
            _ if self.owner.is_none() => Err(AccountRejection::NotOpen),
            AccountCommand::Deposit { account, cents } => {
                Ok(Decision::event(deposited(account, *cents)))
            }
            AccountCommand::Withdraw { account, cents } => {
                if *cents > self.balance {
                    return Err(AccountRejection::InsufficientFunds {
                        balance: self.balance,
                        requested: *cents,
                    });
                }
                Ok(Decision::event(withdrawn(account, *cents)))
            }
        }
    }

    fn evolve(&mut self, event: &AccountEvent) {
        self.events_seen += 1;
        match event {
            AccountEvent::AccountOpened { owner } => self.owner = Some(owner.clone()),
            AccountEvent::MoneyDeposited { cents, .. } => self.balance += cents,
            AccountEvent::MoneyWithdrawn { cents, .. } => self.balance -= cents,
            AccountEvent::AccountClosed => self.owner = None,
        }
    }
}

/// A transfer between two accounts: one aggregate over both account streams.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transfer {
    pub balances: BTreeMap<String, u64>,
    /// The accounts in the order their events were evolved (global order).
    pub order: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TransferMoney {
    pub from: String,
    pub to: String,
    pub cents: u64,
}

impl Aggregate for Transfer {
    const NAME: &'static str = "transfer";
    type Command = TransferMoney;
    type Event = AccountEvent;
    type Rejection = AccountRejection;

    fn decide(&self, t: &TransferMoney) -> Result<Decision<AccountEvent>, AccountRejection> {
        let balance = self.balances.get(&t.from).copied().unwrap_or(0);
        if balance < t.cents {
            return Err(AccountRejection::InsufficientFunds {
                balance,
                requested: t.cents,
            });
        }
        Ok(Decision::none()
            .emit_to(t.from.clone(), withdrawn(&t.from, t.cents))
            .emit_to(t.to.clone(), deposited(&t.to, t.cents)))
    }

    fn evolve(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::MoneyDeposited { account, cents } => {
                *self.balances.entry(account.clone()).or_default() += cents;
                self.order.push(account.clone());
            }
            AccountEvent::MoneyWithdrawn { account, cents } => {
                *self.balances.entry(account.clone()).or_default() -= cents;
                self.order.push(account.clone());
            }
            _ => {}
        }
    }
}

/// Limits of an account, kept in the account's own stream beside the account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum LimitEvent {
    DailyLimitSet { cents: u64 },
}

impl DomainEvent for LimitEvent {
    const TYPES: &'static [EventType] = &[EventType::new("DailyLimitSet", 1)];
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    pub daily: Option<u64>,
    pub events_seen: u64,
}

impl Aggregate for Limits {
    const NAME: &'static str = "limits";
    type Command = u64;
    type Event = LimitEvent;
    type Rejection = String;

    fn decide(&self, cents: &u64) -> Result<Decision<LimitEvent>, String> {
        if self.daily == Some(*cents) {
            return Ok(Decision::none());
        }
        Ok(Decision::event(LimitEvent::DailyLimitSet { cents: *cents }))
    }

    fn evolve(&mut self, LimitEvent::DailyLimitSet { cents }: &LimitEvent) {
        self.daily = Some(*cents);
        self.events_seen += 1;
    }
}
