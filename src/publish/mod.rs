//! Publishing: a version of a project runs in production (`next build`, then Next's own
//! server) in a container of its own, at an address that never changes across republishes:
//! `http://<name>.apps.localhost:<preview port>`, served by the preview listener.
//!
//! The app's embedded database (PGlite) allows one process, so a republish cannot run the
//! old and the new container on the data at once. It first runs the new image on a
//! throwaway copy (a trial), so a version that never answers is caught while the old one
//! serves; then it holds the app's requests in the proxy, stops the old container, starts
//! the new one on the data volume and lets the held requests through. None of them fails.

pub mod build;
mod data;
pub mod data_loss;
mod record;
mod routes;
mod swap;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use uuid::Uuid;

pub use record::{DataStart, PublishStatus, Published, check_name};
pub use routes::AppsUrl;

use crate::sandbox::SandboxError;
use crate::sandbox::docker::DockerProvider;
use crate::store::snapshots::SnapshotLimits;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("publishing needs a Docker engine: {0}")]
    NoEngine(String),
    #[error("{0}")]
    Build(String),
    #[error("the new version never answered: {0}")]
    NeverAnswered(String),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("this project is not published")]
    NotPublished,
    #[error("no version {0}")]
    NoVersion(u32),
    /// The new version's migrations would drop published data, and the person has not
    /// accepted that.
    #[error("{0}")]
    DataLoss(String),
}

/// What a person asks for when publishing.
#[derive(Debug, Clone, Default)]
pub struct PublishRequest {
    /// The version to publish; the newest when `None`.
    pub version: Option<u32>,
    /// A new name for the app (its address); kept when `None`.
    pub name: Option<String>,
    /// What a first publish's data starts from.
    pub data: Option<DataStart>,
    pub private: Option<bool>,
    /// Go ahead although the new version's migrations drop published data (it is backed
    /// up first).
    pub accept_data_loss: bool,
}

/// A published app as the API and the pages show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AppView {
    #[serde(flatten)]
    pub published: Published,
    pub url: String,
    /// Seconds the serving container has been up.
    pub uptime_secs: Option<i64>,
    /// Listings only (asking the engine takes a moment).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
}

pub struct Publisher {
    engine: Result<Arc<DockerProvider>, String>,
    store: Store,
    /// Bounds the project's snapshots, published backups among them.
    data_limits: SnapshotLimits,
    tree: sled::Tree,
    apps_url: AppsUrl,
    routes: routes::Routes,
    /// Projects with a publish under way (one at a time each).
    busy: Mutex<HashSet<Uuid>>,
    /// Serialises looking again at apps that stopped answering.
    refreshing: tokio::sync::Mutex<()>,
}

impl Publisher {
    /// `engine` is the Docker engine apps run on, or why there is none.
    pub fn new(
        store: Store,
        engine: Result<Arc<DockerProvider>, String>,
        apps_url: AppsUrl,
        data_limits: SnapshotLimits,
    ) -> Result<Arc<Self>, StoreError> {
        Ok(Arc::new(Self {
            tree: store.tree("published")?,
            store,
            data_limits,
            engine,
            apps_url,
            routes: routes::Routes::default(),
            busy: Mutex::default(),
            refreshing: tokio::sync::Mutex::new(()),
        }))
    }

    pub fn url_for(&self, name: &str) -> String {
        self.apps_url.url_for(name)
    }

    /// Whether publishing can work here, and why not.
    pub fn engine_problem(&self) -> Option<&str> {
        self.engine.as_ref().err().map(String::as_str)
    }

    fn engine(&self) -> Result<&Arc<DockerProvider>, PublishError> {
        self.engine
            .as_ref()
            .map_err(|problem| PublishError::NoEngine(problem.clone()))
    }

    pub fn get(&self, project_id: Uuid) -> Result<Option<Published>, PublishError> {
        let bytes = self
            .tree
            .get(project_id.as_bytes())
            .map_err(StoreError::from)?;
        Ok(bytes.and_then(|bytes| serde_json::from_slice(&bytes).ok()))
    }

    pub fn all(&self) -> Vec<Published> {
        self.tree
            .iter()
            .values()
            .filter_map(|bytes| serde_json::from_slice(&bytes.ok()?).ok())
            .collect()
    }

    fn save(&self, record: &Published) -> Result<(), PublishError> {
        let bytes = serde_json::to_vec(record).map_err(StoreError::from)?;
        self.tree
            .insert(record.project_id.as_bytes(), bytes)
            .map_err(StoreError::from)?;
        Ok(())
    }

    /// Changes a record in place (a missing one is left missing).
    fn update(&self, project_id: Uuid, change: impl FnOnce(&mut Published)) {
        match self.get(project_id) {
            Ok(Some(mut record)) => {
                change(&mut record);
                record.updated_at = Utc::now();
                if let Err(error) = self.save(&record) {
                    tracing::warn!(%error, %project_id, "could not save the publish record");
                }
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, %project_id, "could not read the publish record"),
        }
    }

    pub fn view(&self, published: Published) -> AppView {
        AppView {
            url: self.url_for(&published.name),
            uptime_secs: published
                .uptime()
                .filter(|_| published.container.is_some())
                .map(|uptime| uptime.num_seconds()),
            memory_bytes: None,
            published,
        }
    }

    /// The published apps with their addresses and memory.
    pub async fn listing(&self) -> Vec<AppView> {
        let mut apps = Vec::new();
        for published in self.all() {
            let memory_bytes = match (&self.engine, &published.container) {
                (Ok(engine), Some(container)) => engine.memory_used(container).await,
                _ => None,
            };
            apps.push(AppView {
                memory_bytes,
                ..self.view(published)
            });
        }
        apps.sort_by(|a, b| a.published.name.cmp(&b.published.name));
        apps
    }

    /// Starts publishing a version in the background; the record says how it goes.
    pub fn publish(
        self: &Arc<Self>,
        project_id: Uuid,
        request: PublishRequest,
    ) -> Result<Published, PublishError> {
        self.engine()?;
        let project = self.store.project(project_id)?;
        let version = self.resolve_version(project_id, request.version)?;
        let existing = self.get(project_id)?;
        let name = match (&request.name, &existing) {
            (Some(name), _) => name.trim().to_string(),
            (None, Some(existing)) => existing.name.clone(),
            (None, None) => self.free_name(&project.name),
        };
        self.check_free(project_id, &name)?;
        if !self.claim(project_id) {
            return Err(PublishError::Conflict(
                "a publish of this project is already under way".into(),
            ));
        }
        let now = Utc::now();
        let record = match existing {
            Some(mut record) => {
                record.name = name;
                record.status = PublishStatus::Building;
                record.building = Some(version);
                record.private = request.private.unwrap_or(record.private);
                record.step = Some("Queued".into());
                record.error = None;
                record.log = None;
                record.data_loss = None;
                record.updated_at = now;
                record
            }
            None => Published {
                project_id,
                name,
                version: None,
                status: PublishStatus::Building,
                building: Some(version),
                private: request.private.unwrap_or(false),
                data: request.data.unwrap_or_default(),
                container: None,
                image: None,
                started_at: None,
                step: Some("Queued".into()),
                error: None,
                log: None,
                data_loss: None,
                updated_at: now,
            },
        };
        if let Err(error) = self.save(&record) {
            self.release(project_id);
            return Err(error);
        }
        self.routes.register(&record);
        let files = self.version_files(project_id, version, record.data)?;
        let publisher = self.clone();
        let number = version;
        let accept_data_loss = request.accept_data_loss;
        tokio::spawn(async move {
            publisher
                .run_publish(project_id, number, files, accept_data_loss)
                .await;
            publisher.release(project_id);
        });
        Ok(record)
    }

    /// A valid name that no other project's app has.
    fn check_free(&self, project_id: Uuid, name: &str) -> Result<(), PublishError> {
        check_name(name)?;
        match self
            .all()
            .into_iter()
            .find(|other| other.name == name && other.project_id != project_id)
        {
            Some(other) => Err(PublishError::Conflict(format!(
                "the name {name:?} is taken by another project's app ({})",
                other.project_id
            ))),
            None => Ok(()),
        }
    }

    /// Renames the app (its address moves at once) or changes who may open it, without
    /// building anything.
    pub fn change(
        &self,
        project_id: Uuid,
        name: Option<&str>,
        private: Option<bool>,
    ) -> Result<Published, PublishError> {
        let mut record = self.get(project_id)?.ok_or(PublishError::NotPublished)?;
        if let Some(name) = name.map(str::trim) {
            self.check_free(project_id, name)?;
            record.name = name.to_string();
        }
        record.private = private.unwrap_or(record.private);
        record.updated_at = Utc::now();
        self.save(&record)?;
        self.routes.register(&record);
        Ok(record)
    }

    /// The number of the version asked for, or of the newest.
    fn resolve_version(&self, project_id: Uuid, wanted: Option<u32>) -> Result<u32, PublishError> {
        let versions = self.store.versions(project_id)?;
        match wanted {
            Some(wanted)
                if versions
                    .iter()
                    .any(|(version, _)| version.version == wanted) =>
            {
                Ok(wanted)
            }
            Some(wanted) => Err(PublishError::NoVersion(wanted)),
            None => versions
                .last()
                .map(|(version, _)| version.version)
                .ok_or_else(|| {
                    PublishError::Invalid("this project has no version to publish yet".into())
                }),
        }
    }

    /// A version's own files, with its data as the seed of a new database when `data` asks.
    fn version_files(
        &self,
        project_id: Uuid,
        version: u32,
        data: DataStart,
    ) -> Result<BTreeMap<String, Vec<u8>>, PublishError> {
        let (_, fragment) = self
            .store
            .versions(project_id)?
            .into_iter()
            .find(|(found, _)| found.version == version)
            .ok_or(PublishError::NoVersion(version))?;
        let mut files: BTreeMap<String, Vec<u8>> = fragment
            .files
            .iter()
            .map(|(path, content)| (path.clone(), content.clone().into_bytes()))
            .collect();
        match self.version_data(project_id, fragment.id) {
            Some(sql) if data == DataStart::Copy => {
                files.insert(swap::SEED_FILE.to_string(), sql.into_bytes());
            }
            // Only the person's choice seeds a published database.
            _ => {
                files.remove(swap::SEED_FILE);
            }
        }
        Ok(files)
    }

    /// `codeflux export`: builds the production image of a version as `image` on the
    /// engine; a new database made from it starts from the version's data unless `data`
    /// says empty. Returns the version built.
    pub async fn export_image(
        &self,
        project_id: Uuid,
        version: Option<u32>,
        image: &str,
        data: DataStart,
        log: &mut (dyn FnMut(&str) + Send),
    ) -> Result<u32, PublishError> {
        let engine = self.engine()?.clone();
        self.store.project(project_id)?;
        let version = self.resolve_version(project_id, version)?;
        let files = self.version_files(project_id, version, data)?;
        let labels = std::collections::HashMap::from([
            (swap::APP_LABEL.to_string(), project_id.to_string()),
            ("codeflux.export".to_string(), "1".to_string()),
        ]);
        build::production_image(&engine, project_id, &files, image, &labels, log).await?;
        Ok(version)
    }

    /// The version's data snapshot as SQL, if it has one.
    fn version_data(&self, project_id: Uuid, fragment_id: Uuid) -> Option<String> {
        let snapshot = self
            .store
            .version_snapshot(project_id, fragment_id)
            .ok()??;
        let (_, gzipped) = self.store.snapshot(project_id, snapshot.id).ok()??;
        crate::data::saved::SavedData::parse(&gzipped)
            .ok()
            .map(|saved| saved.to_sql())
    }

    /// The project's name, or with a number added when another app has it.
    fn free_name(&self, wanted: &str) -> String {
        let taken: HashSet<String> = self.all().into_iter().map(|app| app.name).collect();
        let base = if check_name(wanted).is_ok() {
            wanted.to_string()
        } else {
            "app".to_string()
        };
        (1..)
            .map(|n| {
                if n == 1 {
                    base.clone()
                } else {
                    format!("{base}-{n}")
                }
            })
            .find(|name| !taken.contains(name))
            .unwrap_or(base)
    }

    fn claim(&self, project_id: Uuid) -> bool {
        self.busy
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(project_id)
    }

    fn release(&self, project_id: Uuid) {
        self.busy
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&project_id);
    }

    /// Stops and removes the app. Its data volume is kept for a later publish unless
    /// `remove_data` (the project is being deleted).
    pub async fn unpublish(&self, project_id: Uuid, remove_data: bool) -> Result<(), PublishError> {
        let Some(record) = self.get(project_id)? else {
            if !remove_data {
                return Err(PublishError::NotPublished);
            }
            // Unpublished earlier: its data volume may still be there.
            if let Ok(engine) = self.engine() {
                engine
                    .remove_volume(&swap::volume_name(engine, project_id))
                    .await?;
            }
            return Ok(());
        };
        let engine = self.engine()?;
        // Its data outlives it in the volume, and in the project's snapshots too.
        let back_up = !remove_data && record.container.is_some();
        if back_up && let Err(error) = self.back_up(project_id).await {
            tracing::warn!(%project_id, %error, "could not back up the published data at unpublish");
        }
        self.routes.remove(&record.name);
        if let Some(container) = &record.container {
            engine.remove_container(container).await?;
        }
        if let Some(image) = &record.image {
            engine.remove_image(image).await;
        }
        if remove_data {
            engine
                .remove_volume(&swap::volume_name(engine, project_id))
                .await?;
        }
        self.tree
            .remove(project_id.as_bytes())
            .map_err(StoreError::from)?;
        Ok(())
    }

    /// Brings every published app back after CodeFlux (or the machine) restarted.
    pub async fn resume(self: &Arc<Self>) {
        let Ok(engine) = &self.engine else {
            return;
        };
        let leftovers = engine.remove_leftover_build_stages().await;
        if leftovers > 0 {
            tracing::info!(leftovers, "removed build images an earlier run left behind");
        }
        for record in self.all() {
            self.routes.register(&record);
            if record.status == PublishStatus::Building {
                self.update(record.project_id, |record| {
                    record.status = PublishStatus::Failed;
                    record.building = None;
                    record.step = None;
                    record.error = Some("CodeFlux restarted during this publish".into());
                });
            }
            if let Err(error) = self.bring_back(&record).await {
                tracing::warn!(app = %record.name, %error, "could not bring the published app back");
            }
        }
    }
}

impl Published {
    /// Uptime of the serving container.
    pub fn uptime(&self) -> Option<chrono::Duration> {
        self.started_at.map(|started| Utc::now() - started)
    }
}
