//! Which container answers for each app name, and the hold that keeps requests waiting
//! (not failing) while a republish swaps containers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use uuid::Uuid;

pub use crate::hosts::AppsUrl;
use crate::preview::{AppTarget, PublishedApps};

use super::Publisher;
use super::record::Published;

/// How long a request waits for a swap or a restart before it is answered 503.
const HOLD_LIMIT: Duration = Duration::from_secs(120);

struct Route {
    project_id: Uuid,
    private: bool,
    /// The serving container's base URL; `None` while held.
    upstream: watch::Sender<Option<String>>,
}

#[derive(Default)]
pub(super) struct Routes {
    by_name: Mutex<HashMap<String, Arc<Route>>>,
}

impl Routes {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Route>>> {
        self.by_name
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes `record`'s name answer for its project (dropping an old name of the project).
    pub(super) fn register(&self, record: &Published) {
        let mut routes = self.lock();
        let current = routes
            .iter()
            .find(|(_, route)| route.project_id == record.project_id)
            .map(|(name, route)| (name.clone(), route.clone()));
        let route = match current {
            Some((name, route)) if name == record.name && route.private == record.private => route,
            Some((name, route)) => {
                routes.remove(&name);
                Arc::new(Route {
                    project_id: record.project_id,
                    private: record.private,
                    upstream: watch::Sender::new(route.upstream.borrow().clone()),
                })
            }
            None => Arc::new(Route {
                project_id: record.project_id,
                private: record.private,
                upstream: watch::Sender::new(None),
            }),
        };
        routes.insert(record.name.clone(), route);
    }

    fn route_of(&self, project_id: Uuid) -> Option<Arc<Route>> {
        self.lock()
            .values()
            .find(|route| route.project_id == project_id)
            .cloned()
    }

    /// Requests wait from now on until [`Routes::serve`].
    pub(super) fn hold(&self, project_id: Uuid) {
        if let Some(route) = self.route_of(project_id) {
            route.upstream.send_replace(None);
        }
    }

    pub(super) fn serve(&self, project_id: Uuid, base_url: String) {
        if let Some(route) = self.route_of(project_id) {
            route.upstream.send_replace(Some(base_url));
        }
    }

    pub(super) fn current(&self, project_id: Uuid) -> Option<String> {
        self.route_of(project_id)
            .and_then(|route| route.upstream.borrow().clone())
    }

    pub(super) fn remove(&self, name: &str) {
        self.lock().remove(name);
    }
}

#[async_trait]
impl PublishedApps for Publisher {
    fn app_name(&self, authority: &str) -> Option<String> {
        self.apps_url.app(authority)
    }

    async fn target(&self, name: &str) -> AppTarget {
        let Some(route) = self.routes.lock().get(name).cloned() else {
            return AppTarget::Unknown;
        };
        let mut upstream = route.upstream.subscribe();
        let waited = tokio::time::timeout(HOLD_LIMIT, upstream.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(base_url)) => AppTarget::Serving {
                project_id: route.project_id,
                private: route.private,
                base_url: base_url.clone().unwrap_or_default(),
            },
            _ => AppTarget::Unavailable(match self.get(route.project_id) {
                Ok(Some(record)) if record.version.is_none() => {
                    "This app is being published; it answers once its first version runs.".into()
                }
                _ => "This app is not running right now.".into(),
            }),
        }
    }

    async fn unreachable(&self, name: &str, base_url: &str) {
        let project_id = {
            let routes = self.routes.lock();
            match routes.get(name) {
                Some(route) if route.upstream.borrow().as_deref() == Some(base_url) => {
                    route.project_id
                }
                // Swapped or refreshed meanwhile: the caller tries the new one.
                _ => return,
            }
        };
        self.refresh(project_id).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use chrono::Utc;

    use super::*;
    use crate::publish::record::{DataStart, PublishStatus};

    fn record(project_id: Uuid, name: &str) -> Published {
        Published {
            project_id,
            name: name.into(),
            version: Some(1),
            status: PublishStatus::Running,
            building: None,
            private: false,
            data: DataStart::Copy,
            container: Some("c".into()),
            image: None,
            started_at: None,
            step: None,
            error: None,
            log: None,
            data_loss: None,
            updated_at: Utc::now(),
        }
    }

    #[tokio::test]
    async fn held_requests_wait_for_the_new_container_and_renames_move_the_route() {
        let store = crate::store::Store::temporary().unwrap();
        let publisher = Publisher::new(
            store,
            Err("none".into()),
            AppsUrl::default_for(3001),
            Default::default(),
        )
        .unwrap();
        let project = Uuid::now_v7();
        publisher.routes.register(&record(project, "shop"));
        publisher.routes.serve(project, "http://old:3000".into());
        publisher.routes.hold(project);
        let waiting = tokio::spawn({
            let publisher = Arc::clone(&publisher);
            async move { publisher.target("shop").await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiting.is_finished(), "a held request waits");
        publisher.routes.serve(project, "http://new:3000".into());
        match waiting.await.unwrap() {
            AppTarget::Serving { base_url, .. } => assert_eq!(base_url, "http://new:3000"),
            _ => panic!("the held request goes to the new container"),
        }
        // A new name answers at once with the same container; the old one is gone.
        publisher.routes.register(&record(project, "store"));
        assert!(matches!(publisher.target("shop").await, AppTarget::Unknown));
        match publisher.target("store").await {
            AppTarget::Serving { base_url, .. } => assert_eq!(base_url, "http://new:3000"),
            _ => panic!("the renamed app serves"),
        }
    }
}
