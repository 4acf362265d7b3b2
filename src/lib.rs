//! Atelier: the backend of a Telegram Mini App for AI virtual try-on and photo editing,
//! paid with credits. `main.rs` only parses the command line and calls into this library.

pub mod accounts;
pub mod alerts;
pub mod assistant;
pub mod auth;
pub mod billing;
pub mod bot;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod error_reporting;
pub mod generations;
pub mod http;
pub mod jobs;
pub mod media;
pub mod notices;
pub mod openapi;
pub mod operators;
pub mod privacy;
pub mod providers;
pub mod ratelimit;
pub mod realtime;
pub mod routes;
pub mod run;
pub mod shutdown;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod uploads;
