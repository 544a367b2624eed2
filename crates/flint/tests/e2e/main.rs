//! End-to-end tests: the real `flint` binary on a loopback port, spoken to over HTTP.

mod bundles;
mod cli;
mod conditional;
mod crud;
mod durability;
mod examples;
mod history;
mod http_behaviour;
mod jobs;
mod search;
mod server;
mod validation;
