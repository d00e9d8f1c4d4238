//! Friendly project names: two random words, kebab-case.

use rand::seq::IndexedRandom;

const ADJECTIVES: &[&str] = &[
    "amber", "bold", "brave", "bright", "calm", "clever", "cosmic", "crisp", "daring", "eager",
    "fancy", "gentle", "golden", "happy", "jolly", "keen", "lively", "lucky", "mellow", "misty",
    "nimble", "noble", "quiet", "rapid", "shiny", "silent", "snowy", "sunny", "swift", "tidy",
    "vivid", "witty",
];

const NOUNS: &[&str] = &[
    "badger", "beacon", "canyon", "comet", "falcon", "fjord", "forest", "garden", "glacier",
    "harbor", "heron", "island", "lagoon", "lantern", "meadow", "meteor", "nebula", "otter",
    "panda", "pebble", "phoenix", "prairie", "quartz", "river", "rocket", "sparrow", "summit",
    "tiger", "tundra", "valley", "willow", "zephyr",
];

pub fn random_slug() -> String {
    let mut rng = rand::rng();
    let adjective = ADJECTIVES.choose(&mut rng).copied().unwrap_or("calm");
    let noun = NOUNS.choose(&mut rng).copied().unwrap_or("otter");
    format!("{adjective}-{noun}")
}

impl super::Store {
    /// The projects called `name`, for addresses that name a project (`/git/<name>.git`).
    /// Names are not unique, so there may be several. A scan: it serves a clone, not a page.
    pub fn projects_named(&self, name: &str) -> super::StoreResult<Vec<uuid::Uuid>> {
        let mut named = Vec::new();
        for value in self.projects.iter().values() {
            let project: super::Project = serde_json::from_slice(&value?)?;
            if project.name == name {
                named.push(project.id);
            }
        }
        Ok(named)
    }
}
