//! Virtual actors, as daprd runs them, on one machine.
//!
//! - **Hosting.** An HTTP app hosts the actor types its `GET /dapr/config`
//!   names (`entities`, with `actorIdleTimeout`, `actorScanInterval` and
//!   `entitiesConfig` per type). The sidecar asks once the app answers,
//!   and records the types in the name registry ([`crate::nameres`]);
//!   [`host`] keeps what the app hosts and the actors active here.
//! - **Placement.** Every actor id of a type lives on one of the live
//!   sidecars that host the type, chosen by rendezvous hashing of the
//!   sidecar's address and the id ([`placement`]): every sidecar picks the
//!   same one without asking the others, and a sidecar that comes or goes
//!   moves only the actors it hosted or will host.
//! - **Calls** ([`calls`]). `…/actors/{type}/{id}/method/{method}`
//!   ([`api`], gRPC `InvokeActor`) goes to the hosting sidecar, which
//!   calls its app with `PUT /actors/{type}/{id}/method/{method}`, one
//!   call at a time per actor (turn-based). An actor is active from its first
//!   call until it is idle for its idle timeout; then the app gets
//!   `DELETE /actors/{type}/{id}`, and its timers stop.
//! - **State** ([`state`]): in the component marked `actorStateStore:
//!   "true"` (the default store without `--resources-path`), under daprd's
//!   keys `<appId>||<type>||<id>||<key>`; written in transactions, by the
//!   sidecar where the actor is active.
//! - **Timers** ([`timers`], in memory, ending with the activation) and
//!   **reminders** ([`reminders`], kept in `jobs.db` with the jobs, so they
//!   outlive restarts) fire as calls of `timer/{name}` and `remind/{name}`,
//!   at the times [`times`] reads from `dueTime`, `period` and `ttl`.
//! - **Reentrancy** (`reentrancy: {enabled, maxStackDepth}`, for all
//!   types or per type): a call carrying the `Dapr-Reentrancy-Id` of the
//!   call chain that has the actor's turn enters at once, up to
//!   `maxStackDepth` deep (`ERR_ACTOR_STACK_DEPTH` past it); the app gets
//!   each call's chain id to pass on.
//! - **Rebalancing.** An actor that placement moves to another sidecar
//!   (one that joined or came back) is deactivated here, once it is not in
//!   a call.
//! - **Shutdown.** A stopping sidecar deactivates its actors, each once
//!   its call in progress ends (`drainOngoingCallTimeout`, 60 s).
//!
//! Not as daprd: gRPC apps cannot host actors (daprd's actor callback
//! stream is not served).

pub mod api;
mod calls;
mod host;
mod placement;
mod reminders;
mod state;
mod timers;
pub(crate) mod times;

pub(crate) use calls::{ActorCall, INTERNAL_PREFIX, peer_answer, validate_name};
pub use host::Actors;
pub(crate) use reminders::{
    ReminderRequest, Stored as StoredReminder, owner as reminder_owner, owner_actor_type,
};
pub(crate) use state::ActorStateOperation;
pub(crate) use timers::TimerRequest;

/// An actor, by type and id.
pub(crate) type ActorKey = (String, String);
