//! End-to-end tests over HTTP: the router and request core in this process (see
//! `server.rs`), and the real `flint` binary where only a process shows the behaviour.

mod async_requests;
mod bundles;
mod cli;
mod conditional;
mod crud;
mod custom_ops;
mod durability;
mod examples;
mod export;
mod fuzz;
mod history;
mod http_behaviour;
mod jobs;
mod operations;
mod request_core;
mod search;
mod server;
mod terminology;
mod validation;
mod xml;
