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
mod generations;
mod health;
mod ledger;
mod limits;
mod metrics;
mod openapi;
mod payments;
mod privacy;
mod problems;
mod providers;
mod queue;
mod referrals;
mod stars;
mod uploads;
mod ws;
