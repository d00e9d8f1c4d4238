//! A publish from build to serving, and bringing an app back after a restart.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use chrono::Utc;
use uuid::Uuid;

use super::build::{self, APP_PORT, DATA_PATH};
use super::data_loss::{DataLoss, Refusal};
use super::record::{PublishStatus, Published};
use super::{PublishError, Publisher};
use crate::sandbox::docker::{AppContainer, DockerProvider};

/// The seed a new database gets (the version's data, when the person chose a copy).
pub(super) const SEED_FILE: &str = "db/data.sql";
/// Label on app containers and images: the project they publish.
pub const APP_LABEL: &str = "codeflux.app";
const VERSION_LABEL: &str = "codeflux.app.version";
/// How long a new container may take to answer its first request.
const ANSWER_LIMIT: Duration = Duration::from_secs(120);
/// How long the old container gets to finish its requests when it is replaced.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Most lines of a build log kept with the record.
const LOG_LINES: usize = 400;

pub(super) fn volume_name(engine: &DockerProvider, project_id: Uuid) -> String {
    format!(
        "codeflux-{}-app-{}-data",
        engine.config().instance,
        project_id.simple()
    )
}

fn suffix() -> String {
    Uuid::now_v7().simple().to_string()[20..].to_string()
}

impl Publisher {
    /// Builds `version`, tries it, and swaps it in; the record tells how it went.
    pub(super) async fn run_publish(
        &self,
        project_id: Uuid,
        version: u32,
        files: BTreeMap<String, Vec<u8>>,
        accept_data_loss: bool,
    ) {
        let losses = match self.data_loss(project_id, version).await {
            Ok(losses) => losses,
            Err(error) if accept_data_loss => {
                tracing::warn!(%project_id, %error, "publishing without the data check, as asked");
                Vec::new()
            }
            Err(error) => return self.failed(project_id, version, error, String::new()),
        };
        if !losses.is_empty() && !accept_data_loss {
            let error = PublishError::DataLoss(format!(
                "Not published: v{version}'s schema change drops {}. The published version keeps its data. To go ahead, publish again accepting the loss; the published data is backed up first.",
                DataLoss::describe(&losses)
            ));
            self.failed(project_id, version, error, String::new());
            self.update(project_id, |record| {
                record.data_loss = Some(Refusal { version, losses });
            });
            return;
        }
        // Whatever it drops is worth nothing without its backup.
        let must_back_up = !losses.is_empty();
        let outcome = self
            .publish_steps(project_id, version, &files, must_back_up)
            .await;
        if let Err((error, log)) = outcome {
            self.failed(project_id, version, error, log);
        }
    }

    fn failed(&self, project_id: Uuid, version: u32, error: PublishError, log: String) {
        tracing::warn!(%project_id, version, %error, "publish failed");
        self.update(project_id, |record| {
            record.status = PublishStatus::Failed;
            record.building = None;
            record.step = None;
            record.error = Some(error.to_string());
            record.log = (!log.is_empty()).then_some(log);
        });
    }

    async fn publish_steps(
        &self,
        project_id: Uuid,
        version: u32,
        files: &BTreeMap<String, Vec<u8>>,
        must_back_up: bool,
    ) -> Result<(), (PublishError, String)> {
        let mut lines: Vec<String> = Vec::new();
        let engine = self
            .engine()
            .map_err(|error| (error, String::new()))?
            .clone();
        let tag = format!(
            "codeflux-app-{}:v{version}-{}",
            project_id.simple(),
            suffix()
        );
        let labels = HashMap::from([
            (APP_LABEL.to_string(), project_id.to_string()),
            (VERSION_LABEL.to_string(), version.to_string()),
        ]);
        let mut last_saved = Instant::now();
        let mut log = |line: &str| {
            lines.push(line.to_string());
            if lines.len() > LOG_LINES {
                lines.remove(0);
            }
            // The page shows the current step; saved at most twice a second.
            if last_saved.elapsed() > Duration::from_millis(500) {
                last_saved = Instant::now();
                let step: String = line.chars().take(200).collect();
                self.update(project_id, |record| record.step = Some(step));
            }
        };
        let built =
            build::production_image(&engine, project_id, files, &tag, &labels, &mut log).await;
        if let Err(error) = built {
            engine.remove_image(&tag).await;
            return Err((error, lines.join("\n")));
        }
        log("Trying the new version on throwaway data");
        if let Err(error) = self
            .trial(&engine, project_id, version, &tag, &labels)
            .await
        {
            engine.remove_image(&tag).await;
            return Err((error, lines.join("\n")));
        }
        log("Swapping it in");
        self.swap(&engine, project_id, version, &tag, &labels, must_back_up)
            .await
            .map_err(|error| (error, lines.join("\n")))
    }

    fn app_container(
        &self,
        engine: &DockerProvider,
        project_id: Uuid,
        version: u32,
        image: &str,
        labels: &HashMap<String, String>,
        trial: bool,
    ) -> AppContainer {
        let name = self
            .get(project_id)
            .ok()
            .flatten()
            .map_or_else(|| "app".to_string(), |record| record.name);
        let kind = if trial { "trial" } else { "app" };
        AppContainer {
            name: format!(
                "codeflux-{}-{kind}-{name}-v{version}-{}",
                engine.config().instance,
                suffix()
            ),
            image: image.to_string(),
            labels: labels.clone(),
            env: Vec::new(),
            volume: (!trial).then(|| volume_name(engine, project_id)),
            data_path: DATA_PATH.to_string(),
            restart: !trial,
        }
    }

    /// Runs the new image once on its own throwaway data: a version that never answers is
    /// caught here, while the old one still serves.
    async fn trial(
        &self,
        engine: &DockerProvider,
        project_id: Uuid,
        version: u32,
        image: &str,
        labels: &HashMap<String, String>,
    ) -> Result<(), PublishError> {
        let spec = self.app_container(engine, project_id, version, image, labels, true);
        let (id, _) = start_answering(engine, spec).await?;
        let _ = engine.remove_container(&id).await;
        Ok(())
    }

    async fn swap(
        &self,
        engine: &DockerProvider,
        project_id: Uuid,
        version: u32,
        image: &str,
        labels: &HashMap<String, String>,
        must_back_up: bool,
    ) -> Result<(), PublishError> {
        let old = self.get(project_id)?;
        let old_container = old.as_ref().and_then(|record| record.container.clone());
        let old_image = old.and_then(|record| record.image);
        let serving = self.routes.current(project_id);
        self.routes.hold(project_id);
        // Backed up while requests wait: the copy is exactly what the new version starts from.
        let backed_up = match old_container {
            Some(_) => self.back_up(project_id).await.map(|_| ()),
            None => Ok(()),
        };
        if let Err(error) = backed_up {
            tracing::warn!(%project_id, %error, "could not back up the published data");
            if must_back_up {
                if let Some(url) = serving {
                    self.routes.serve(project_id, url);
                }
                engine.remove_image(image).await;
                return Err(PublishError::DataLoss(format!(
                    "Not published: the published data could not be backed up before a change that drops some of it ({error})."
                )));
            }
        }
        // PGlite allows one process on the data: the old one stops first.
        if let Some(container) = &old_container {
            engine.stop_container(container, STOP_GRACE).await;
        }
        let spec = self.app_container(engine, project_id, version, image, labels, false);
        match start_answering(engine, spec).await {
            Ok((id, base_url)) => {
                self.routes.serve(project_id, base_url);
                if let Some(container) = &old_container {
                    let _ = engine.remove_container(container).await;
                }
                if let Some(old_image) = old_image.as_deref().filter(|old| *old != image) {
                    engine.remove_image(old_image).await;
                }
                self.update(project_id, |record| {
                    record.status = PublishStatus::Running;
                    record.version = Some(version);
                    record.building = None;
                    record.step = None;
                    record.container = Some(id);
                    record.image = Some(image.to_string());
                    record.started_at = Some(Utc::now());
                    record.error = None;
                    record.log = None;
                });
                Ok(())
            }
            Err(error) => {
                engine.remove_image(image).await;
                // The old version comes back on its data as it was.
                if let Some(container) = &old_container {
                    match self.start_again(engine, container).await {
                        Ok(base_url) => self.routes.serve(project_id, base_url),
                        Err(again) => {
                            tracing::error!(%project_id, error = %again, "the old version did not come back")
                        }
                    }
                }
                Err(error)
            }
        }
    }

    async fn start_again(
        &self,
        engine: &DockerProvider,
        container: &str,
    ) -> Result<String, PublishError> {
        engine.start_app(container).await?;
        wait_until_answers(engine, container)
            .await
            .map_err(PublishError::NeverAnswered)
    }

    /// After a restart: seal and route a running container, start a stopped one, or run
    /// the image again when the container is gone (its data is in the volume).
    pub(super) async fn bring_back(&self, record: &Published) -> Result<(), PublishError> {
        let engine = self.engine()?.clone();
        let (Some(container), Some(image), Some(version)) =
            (&record.container, &record.image, record.version)
        else {
            return Ok(());
        };
        let base_url = match engine.app_state(container).await {
            Some(state) if state.running => {
                engine.reseal_app(container).await?;
                wait_until_answers(&engine, container)
                    .await
                    .map_err(PublishError::NeverAnswered)?
            }
            Some(_) => self.start_again(&engine, container).await?,
            None if engine.has_image(image).await => {
                let labels = HashMap::from([
                    (APP_LABEL.to_string(), record.project_id.to_string()),
                    (VERSION_LABEL.to_string(), version.to_string()),
                ]);
                let spec =
                    self.app_container(&engine, record.project_id, version, image, &labels, false);
                let id = engine.run_app(spec).await?;
                self.update(record.project_id, |record| {
                    record.container = Some(id.clone());
                    record.started_at = Some(Utc::now());
                });
                wait_until_answers(&engine, &id)
                    .await
                    .map_err(PublishError::NeverAnswered)?
            }
            None => {
                return Err(PublishError::NeverAnswered(format!(
                    "its image {image} is gone; publish it again"
                )));
            }
        };
        self.routes.serve(record.project_id, base_url);
        Ok(())
    }

    /// The app stopped answering at its address: it may have been restarted by the engine
    /// (a crash), which closes its network gate and can change its address.
    pub(super) async fn refresh(&self, project_id: Uuid) {
        let _one_at_a_time = self.refreshing.lock().await;
        let before = self.routes.current(project_id);
        let Ok(Some(record)) = self.get(project_id) else {
            return;
        };
        let Ok(engine) = self.engine() else { return };
        let Some(container) = record.container.clone() else {
            return;
        };
        // Another request refreshed it while this one waited for the lock.
        if before.is_none() {
            return;
        }
        let running = engine
            .app_state(&container)
            .await
            .is_some_and(|state| state.running);
        if !running {
            return;
        }
        self.routes.hold(project_id);
        let _ = engine.reseal_app(&container).await;
        match wait_until_answers(engine, &container).await {
            Ok(base_url) => self.routes.serve(project_id, base_url),
            Err(reason) => {
                tracing::warn!(%project_id, %reason, "the published app does not answer");
                // Let requests through again (they get the proxy's error, not a hang).
                if let Some(url) = before {
                    self.routes.serve(project_id, url);
                }
            }
        }
    }
}

/// Runs an app container and waits until it answers; one that never does is removed, and
/// its last lines say why.
async fn start_answering(
    engine: &DockerProvider,
    spec: AppContainer,
) -> Result<(String, String), PublishError> {
    let id = engine.run_app(spec).await?;
    match wait_until_answers(engine, &id).await {
        Ok(base_url) => Ok((id, base_url)),
        Err(reason) => {
            let logs = engine.container_logs(&id, 80).await;
            let _ = engine.remove_container(&id).await;
            Err(PublishError::NeverAnswered(format!("{reason}\n{logs}")))
        }
    }
}

/// Waits until the container's server answers (any status below 500); returns its base URL.
async fn wait_until_answers(engine: &DockerProvider, container: &str) -> Result<String, String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .map_err(|error| error.to_string())?;
    let deadline = Instant::now() + ANSWER_LIMIT;
    let mut last = "no answer yet".to_string();
    while Instant::now() < deadline {
        match engine.app_state(container).await {
            Some(state) if state.running => {}
            Some(_) => return Err(format!("the container stopped ({last})")),
            None => return Err("the container is gone".into()),
        }
        if let Ok(address) = engine.container_address(container).await {
            let base_url = format!("http://{address}:{APP_PORT}");
            match client.get(format!("{base_url}/")).send().await {
                Ok(response) if response.status().as_u16() < 500 => return Ok(base_url),
                Ok(response) => last = format!("it answered {}", response.status()),
                Err(error) => last = error.to_string(),
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(format!(
        "no answer within {} s ({last})",
        ANSWER_LIMIT.as_secs()
    ))
}
