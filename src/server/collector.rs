//! The garbage collector of each storage root (`gc::schedule`): started when the server
//! runs, handed each reload's engine and `[gc]`/`[[retention]]` settings (the next run
//! uses them), stopped with the server. A run stopped mid-way is as safe as a crash (the
//! `gc` module docs), and this host's next process takes the lease at once.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::gc::metrics::GcMetrics;
use crate::gc::schedule::{self, Plan};
use crate::registry::Registry;

/// A running scheduler: where its plans go, and its task.
type Running = (watch::Sender<Plan>, JoinHandle<()>);

pub(super) struct Collectors {
    metrics: GcMetrics,
    /// This process's name on the GC lease.
    holder: String,
    running: Mutex<HashMap<PathBuf, Running>>,
}

impl Collectors {
    pub(super) fn new(metrics: GcMetrics) -> Self {
        Self {
            metrics,
            holder: crate::events::lease::holder_name(),
            running: Mutex::new(HashMap::new()),
        }
    }

    /// Starts a scheduler for each root without one, gives every running one its root's
    /// current engine and settings, and stops those of roots no route names any more.
    pub(super) fn apply(&self, config: &Config, registries: &HashMap<PathBuf, Arc<Registry>>) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.retain(|root, (_, task)| {
            let keep = registries.contains_key(root);
            if !keep {
                task.abort();
            }
            keep
        });
        let retention: Arc<[_]> = config.retention.clone().into();
        for (root, engine) in registries {
            let plan = Plan {
                engine: engine.clone(),
                gc: config.gc.clone(),
                retention: retention.clone(),
                mirror: crate::gc::mirror_roots::policies(config, root).into(),
            };
            match running.get(root) {
                Some((plans, _)) => {
                    let _ = plans.send(plan);
                }
                None => {
                    let (plans, rx) = watch::channel(plan);
                    let run = schedule::run_forever(rx, self.holder.clone(), self.metrics.clone());
                    running.insert(root.clone(), (plans, tokio::spawn(run)));
                }
            }
        }
    }

    pub(super) fn shutdown(&self) {
        let running = std::mem::take(&mut *self.running.lock().unwrap_or_else(|p| p.into_inner()));
        for (_, (_, task)) in running {
            task.abort();
        }
    }
}
