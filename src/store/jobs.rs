//! Jobs and the queue index that the dispatcher reads.

use super::*;

impl Store {
    pub fn job(&self, id: Uuid) -> StoreResult<Job> {
        get(&self.jobs, id.as_bytes())?.ok_or(StoreError::NotFound("job"))
    }

    /// Saves a job and keeps the open-jobs index in step with its status.
    pub fn put_job(&self, job: &Job) -> StoreResult<()> {
        put(&self.jobs, job.id.as_bytes(), job)?;
        let index_key = pair_key(job.project_id, job.id);
        match job.status {
            JobStatus::Queued | JobStatus::Running => {
                self.open_jobs.insert(index_key, &[])?;
                self.queue.insert(job.id.as_bytes(), &[])?;
            }
            JobStatus::Done | JobStatus::Failed | JobStatus::Cancelled => {
                self.open_jobs.remove(index_key)?;
                self.queue.remove(job.id.as_bytes())?;
            }
        }
        Ok(())
    }

    /// Every job that is queued or running, oldest first, read lazily: the dispatcher stops
    /// as soon as its workers are busy, however long the queue.
    pub fn open_jobs(&self) -> impl Iterator<Item = StoreResult<Job>> + '_ {
        self.queue
            .iter()
            .keys()
            .map(|key| self.job(uuid_from(&key?)))
    }

    /// The project's queued or running jobs, oldest first.
    pub fn open_jobs_of(&self, project_id: Uuid) -> StoreResult<Vec<Job>> {
        let mut jobs = self
            .open_jobs
            .scan_prefix(project_id.as_bytes())
            .keys()
            .map(|key| self.job(uuid_from(&key?[16..])))
            .collect::<StoreResult<Vec<Job>>>()?;
        jobs.sort_by_key(|job| job.id);
        Ok(jobs)
    }

    pub fn project_status(&self, project_id: Uuid) -> StoreResult<ProjectStatus> {
        self.project_status_besides(project_id, None)
    }

    /// The project's status if the job `finishing` were already over (it announces its end
    /// just before its status is stored).
    pub fn project_status_besides(
        &self,
        project_id: Uuid,
        finishing: Option<Uuid>,
    ) -> StoreResult<ProjectStatus> {
        let mut status = ProjectStatus::Idle;
        for key in self.open_jobs.scan_prefix(project_id.as_bytes()).keys() {
            let job_id = uuid_from(&key?[16..]);
            if Some(job_id) == finishing {
                continue;
            }
            match self.job(job_id)?.status {
                JobStatus::Running => return Ok(ProjectStatus::Running),
                JobStatus::Queued => status = ProjectStatus::Queued,
                _ => {}
            }
        }
        Ok(status)
    }
}
