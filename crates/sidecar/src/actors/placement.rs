//! Which sidecar hosts an actor: of the live sidecars whose apps host its
//! type (the name registry's [`crate::nameres::Registry::actor_hosts`]),
//! the one whose address scores highest with the actor's id (rendezvous
//! hashing). Every sidecar computes the same answer from the same list,
//! and a sidecar joining or leaving moves only the actors that scored
//! highest with it. The list is cached for [`crate::nameres::LOOKUP_CACHE_FOR`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Instant;

use crate::Sidecar;
use crate::error::DaprError;
use crate::nameres::LOOKUP_CACHE_FOR;

/// Recent answers of the registry, by actor type.
#[derive(Default)]
pub(super) struct HostsCache {
    recent: Mutex<HashMap<String, (Vec<SocketAddr>, Instant)>>,
}

impl HostsCache {
    fn get(&self, actor_type: &str) -> Option<Vec<SocketAddr>> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent
            .get(actor_type)
            .filter(|(_, at)| at.elapsed() < LOOKUP_CACHE_FOR)
            .map(|(hosts, _)| hosts.clone())
    }

    fn put(&self, actor_type: &str, hosts: Vec<SocketAddr>) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.insert(actor_type.to_string(), (hosts, Instant::now()));
    }

    /// Drops the answer for `actor_type` (a host of it could not be
    /// reached).
    pub(super) fn forget(&self, actor_type: &str) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.remove(actor_type);
    }
}

/// FNV-1a, 64 bits: stable across builds and processes, which the
/// placement needs (every sidecar must score alike).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in *part {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        // A separator, so that ("ab", "c") and ("a", "bc") differ.
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // A final mix (FNV's low bits mix poorly on their own).
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^ (hash >> 33)
}

/// The host of `actor_id` among `hosts`.
pub(super) fn pick(hosts: &[SocketAddr], actor_type: &str, actor_id: &str) -> Option<SocketAddr> {
    hosts.iter().copied().max_by_key(|host| {
        let address = host.to_string();
        fnv1a(&[
            address.as_bytes(),
            actor_type.as_bytes(),
            actor_id.as_bytes(),
        ])
    })
}

impl Sidecar {
    /// The HTTP address of the sidecar that hosts the actor.
    pub(crate) async fn actor_host(
        &self,
        actor_type: &str,
        actor_id: &str,
    ) -> Result<SocketAddr, DaprError> {
        let hosts = match self.actors.hosts_cache.get(actor_type) {
            Some(hosts) => hosts,
            None => {
                let registry = self.registry.clone();
                let wanted = actor_type.to_string();
                let hosts = tokio::task::spawn_blocking(move || registry.actor_hosts(&wanted))
                    .await
                    .map_err(|e| DaprError::ActorInvoke(e.to_string()))?
                    .map_err(|e| DaprError::ActorInvoke(e.to_string()))?;
                self.actors.hosts_cache.put(actor_type, hosts.clone());
                hosts
            }
        };
        pick(&hosts, actor_type, actor_id)
            .ok_or_else(|| DaprError::ActorNoAddress(format!("{actor_type}||{actor_id}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(n: u16) -> Vec<SocketAddr> {
        (0..n)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 3500 + i)))
            .collect()
    }

    #[test]
    fn actors_spread_over_the_hosts_and_few_move_when_one_joins() {
        let three = hosts(3);
        let mut per_host: HashMap<SocketAddr, usize> = HashMap::new();
        for id in 0..3_000 {
            let host = pick(&three, "Cart", &id.to_string()).unwrap();
            *per_host.entry(host).or_default() += 1;
        }
        assert_eq!(per_host.len(), 3);
        assert!(
            per_host.values().all(|&n| (700..=1_300).contains(&n)),
            "{per_host:?}"
        );
        let four = hosts(4);
        let joined = four[3];
        for id in 0..3_000 {
            let id = id.to_string();
            let before = pick(&three, "Cart", &id).unwrap();
            let after = pick(&four, "Cart", &id).unwrap();
            assert!(
                after == before || after == joined,
                "actor {id} moved from {before} to {after}, not to the new host"
            );
        }
        assert_eq!(pick(&[], "Cart", "1"), None);
    }
}
