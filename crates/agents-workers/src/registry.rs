//! The worker registry: every known worker, local and remote, with watches.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::types::WorkerReadyData;

/// A watch handler: called with the worker's data when it registers.
pub type WatchHandler = Arc<dyn Fn(WorkerReadyData) -> BoxFuture<'static, ()> + Send + Sync>;

#[derive(Default)]
struct State {
    local: BTreeMap<String, WorkerReadyData>,
    remote: BTreeMap<String, BTreeMap<String, WorkerReadyData>>,
    watchers: HashMap<String, Vec<WatchHandler>>,
}

struct Inner {
    runner_name: String,
    state: Mutex<State>,
    version: watch::Sender<u64>,
}

/// Tracks every known worker; owned by a runner and shared with its workers. Cheap to clone.
#[derive(Clone)]
pub struct WorkerRegistry {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for WorkerRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerRegistry")
            .field("runner_name", &self.inner.runner_name)
            .finish_non_exhaustive()
    }
}

impl WorkerRegistry {
    /// An empty registry owned by `runner_name`.
    pub fn new(runner_name: impl Into<String>) -> Self {
        let (version, _) = watch::channel(0);
        Self {
            inner: Arc::new(Inner {
                runner_name: runner_name.into(),
                state: Mutex::new(State::default()),
                version,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The owning runner.
    pub fn runner_name(&self) -> &str {
        &self.inner.runner_name
    }

    /// Names of the workers registered under this runner.
    pub fn local_workers(&self) -> Vec<String> {
        self.state().local.keys().cloned().collect()
    }

    /// Names of the workers registered under other runners.
    pub fn remote_workers(&self) -> Vec<String> {
        self.state()
            .remote
            .values()
            .flat_map(|m| m.keys().cloned())
            .collect()
    }

    /// Looks a worker up: the local entry first, then remote runners.
    pub fn get(&self, worker_name: &str) -> Option<WorkerReadyData> {
        let state = self.state();
        state.local.get(worker_name).cloned().or_else(|| {
            state
                .remote
                .values()
                .find_map(|m| m.get(worker_name).cloned())
        })
    }

    /// Whether a worker of that name is known.
    pub fn contains(&self, worker_name: &str) -> bool {
        self.get(worker_name).is_some()
    }

    /// Registers a worker. Returns `true` if it is new for its runner's map (watchers are then called in order),
    /// `false` if that runner already had that name. A name already known from a different runner is warned about
    /// and recorded too; [`get`](Self::get) prefers the local entry.
    pub async fn register(&self, data: WorkerReadyData) -> bool {
        let handlers = {
            let mut state = self.state();
            let local = data.runner == self.inner.runner_name;
            let already = if local {
                state.local.contains_key(&data.worker_name)
            } else {
                state
                    .remote
                    .get(&data.runner)
                    .is_some_and(|m| m.contains_key(&data.worker_name))
            };
            if already {
                return false;
            }
            let elsewhere: Vec<String> = std::iter::once((&self.inner.runner_name, &state.local))
                .chain(state.remote.iter())
                .filter(|(runner, map)| {
                    **runner != data.runner && map.contains_key(&data.worker_name)
                })
                .map(|(runner, _)| runner.clone())
                .collect();
            if !elsewhere.is_empty() {
                tracing::warn!(worker = %data.worker_name, runner = %data.runner, others = ?elsewhere,
                    "worker registered on both runners; the local entry wins");
            }
            if local {
                state.local.insert(data.worker_name.clone(), data.clone());
            } else {
                state
                    .remote
                    .entry(data.runner.clone())
                    .or_default()
                    .insert(data.worker_name.clone(), data.clone());
            }
            state
                .watchers
                .get(&data.worker_name)
                .cloned()
                .unwrap_or_default()
        };
        self.inner.version.send_modify(|v| *v += 1);
        for handler in handlers {
            handler(data.clone()).await;
        }
        true
    }

    /// Removes a local worker (when it stops). Returns whether it was registered.
    pub fn unregister_local(&self, worker_name: &str) -> bool {
        let removed = self.state().local.remove(worker_name).is_some();
        if removed {
            self.inner.version.send_modify(|v| *v += 1);
        }
        removed
    }

    /// Names of the workers registered under the remote runner `runner`.
    pub fn workers_of(&self, runner: &str) -> Vec<String> {
        self.state()
            .remote
            .get(runner)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Forgets one worker of a remote runner (it is no longer in that runner's snapshot). Returns whether it was
    /// registered.
    pub fn unregister_remote(&self, runner: &str, worker_name: &str) -> bool {
        let removed = {
            let mut state = self.state();
            let removed = state
                .remote
                .get_mut(runner)
                .is_some_and(|m| m.remove(worker_name).is_some());
            if state.remote.get(runner).is_some_and(BTreeMap::is_empty) {
                state.remote.remove(runner);
            }
            removed
        };
        if removed {
            self.inner.version.send_modify(|v| *v += 1);
        }
        removed
    }

    /// A receiver that changes whenever a worker registers or leaves.
    pub(crate) fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.inner.version.subscribe()
    }

    /// Forgets every worker of a remote runner.
    pub fn remove_runner(&self, runner: &str) {
        if self.state().remote.remove(runner).is_some() {
            self.inner.version.send_modify(|v| *v += 1);
        }
    }

    /// Stores `handler` for `worker_name`; calls it now if the worker is already registered, and again each
    /// time that name registers.
    pub async fn watch(&self, worker_name: &str, handler: WatchHandler) {
        let known = {
            let mut state = self.state();
            state
                .watchers
                .entry(worker_name.to_owned())
                .or_default()
                .push(handler.clone());
            state.local.get(worker_name).cloned().or_else(|| {
                state
                    .remote
                    .values()
                    .find_map(|m| m.get(worker_name).cloned())
            })
        };
        if let Some(data) = known {
            handler(data).await;
        }
    }

    /// Waits until every name is registered, or until `deadline`. On timeout returns the missing names.
    pub async fn wait_for(
        &self,
        names: &[String],
        deadline: Option<Instant>,
    ) -> Result<(), Vec<String>> {
        let mut version = self.inner.version.subscribe();
        loop {
            let missing: Vec<String> = names
                .iter()
                .filter(|n| !self.contains(n))
                .cloned()
                .collect();
            if missing.is_empty() {
                return Ok(());
            }
            let changed = version.changed();
            match deadline {
                Some(d) => match tokio::time::timeout_at(d, changed).await {
                    Ok(Ok(())) => {}
                    _ => return Err(missing),
                },
                None => {
                    if changed.await.is_err() {
                        return Err(missing);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn data(name: &str, runner: &str) -> WorkerReadyData {
        WorkerReadyData {
            worker_name: name.into(),
            runner: runner.into(),
        }
    }

    fn recorder() -> (WatchHandler, Arc<Mutex<Vec<WorkerReadyData>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let h: WatchHandler = Arc::new(move |d| {
            let s = s.clone();
            Box::pin(async move { s.lock().unwrap().push(d) })
        });
        (h, seen)
    }

    // Behaviour 5.
    #[tokio::test]
    async fn register_returns_new_and_notifies_only_when_new() {
        let r = WorkerRegistry::new("A");
        let (h, seen) = recorder();
        r.watch("w", h).await;
        assert!(r.register(data("w", "A")).await);
        assert!(!r.register(data("w", "A")).await);
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    // Behaviour 6.
    #[tokio::test]
    async fn duplicate_across_runners_recorded_local_preferred() {
        let r = WorkerRegistry::new("A");
        assert!(r.register(data("w", "B")).await);
        assert_eq!(r.get("w").unwrap().runner, "B");
        assert!(r.register(data("w", "A")).await);
        assert_eq!(r.get("w").unwrap().runner, "A");
        assert!(
            r.register(data("w", "C")).await,
            "recorded under a third runner too"
        );
        assert_eq!(r.get("w").unwrap().runner, "A");
        assert_eq!(r.remote_workers().len(), 2);
    }

    // Behaviour 7.
    #[tokio::test]
    async fn watch_fires_now_for_known_and_later_for_unknown() {
        let r = WorkerRegistry::new("A");
        r.register(data("known", "A")).await;
        let (h, seen) = recorder();
        r.watch("known", h).await;
        assert_eq!(seen.lock().unwrap().as_slice(), &[data("known", "A")]);
        let (h2, seen2) = recorder();
        r.watch("later", h2).await;
        assert!(seen2.lock().unwrap().is_empty());
        r.register(data("later", "B")).await;
        r.register(data("later", "C")).await;
        assert_eq!(
            seen2.lock().unwrap().as_slice(),
            &[data("later", "B"), data("later", "C")]
        );
    }

    // Behaviour 8.
    #[tokio::test]
    async fn get_unknown_and_split_lists() {
        let r = WorkerRegistry::new("A");
        assert!(r.get("unknown").is_none());
        r.register(data("a1", "A")).await;
        r.register(data("b1", "B")).await;
        assert_eq!(r.local_workers(), vec!["a1".to_owned()]);
        assert_eq!(r.remote_workers(), vec!["b1".to_owned()]);
        assert!(r.unregister_local("a1"));
        assert!(!r.contains("a1"));
        r.remove_runner("B");
        assert!(r.remote_workers().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn wait_for_times_out_with_missing_names() {
        let r = WorkerRegistry::new("A");
        r.register(data("a", "A")).await;
        let names = vec!["a".to_owned(), "b".to_owned()];
        let deadline = Instant::now() + Duration::from_millis(50);
        assert_eq!(
            r.wait_for(&names, Some(deadline)).await,
            Err(vec!["b".to_owned()])
        );
        let r2 = r.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            r2.register(data("b", "B")).await;
        });
        let deadline = Instant::now() + Duration::from_millis(50);
        assert_eq!(r.wait_for(&names, Some(deadline)).await, Ok(()));
    }
}
