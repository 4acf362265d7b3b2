//! The one integration test binary: black-box tests over HTTP against the real server,
//! PostgreSQL and Redis.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fakes;
mod helpers;

mod admin;
mod assistant;
mod auth;
mod bot;
mod cli;
mod contract_regressions;
mod demo;
mod error_reporting;
mod generation_worker;
mod generations;
mod health;
mod idempotency;
mod ledger;
mod limits;
mod metrics;
mod notices;
mod openapi;
mod payment_limits;
mod payments;
mod privacy;
mod problems;
mod providers;
mod queue;
mod referrals;
mod stars;
mod upload_framing;
mod uploads;
mod ws;
