//! The one integration test binary: black-box tests over HTTP against the real server,
//! PostgreSQL and Redis.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fakes;
mod helpers;

mod assistant;
mod auth;
mod cli;
mod generations;
mod health;
mod ledger;
mod openapi;
mod problems;
mod providers;
mod queue;
mod uploads;
mod ws;
