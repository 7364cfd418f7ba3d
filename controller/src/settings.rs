//! What the controller is told at start: images, pull policy, its namespace and verbosity.

/// The controller's start-up settings, from flags or upstream's env vars.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Image of importer pods (`IMPORTER_IMAGE`).
    pub importer_image: String,
    /// Image of upload server pods (`UPLOADSERVER_IMAGE`).
    pub uploadserver_image: String,
    /// Image of clone source pods (`CLONER_IMAGE`).
    pub cloner_image: String,
    /// `imagePullPolicy` of worker pods (`PULL_POLICY`).
    pub pull_policy: String,
    /// Namespace the controller runs in: holds its Lease and the upload CAs.
    pub namespace: String,
    /// Verbosity passed to worker pods as `-v=N` (importer) and `-v=N+1` (upload server).
    pub verbosity: u8,
    /// Name of the upload proxy Service, for CDIConfig's status (`UPLOADPROXY_SERVICE`).
    pub uploadproxy_service: String,
    /// The controller's `CDI_LOG_FORMAT`, handed on to worker pods so the whole installation
    /// logs alike (unset: workers log as they default to).
    pub log_format: Option<String>,
    /// For tests: DataImportCrons with a schedule poll this often instead of on their
    /// schedule's minutes (`--dataimportcron-poll-interval`).
    pub dataimportcron_poll_interval: Option<std::time::Duration>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            importer_image: "quay.io/cdi-rs/cdi-importer:latest".into(),
            uploadserver_image: "quay.io/cdi-rs/cdi-uploadserver:latest".into(),
            cloner_image: "quay.io/cdi-rs/cdi-cloner:latest".into(),
            pull_policy: "IfNotPresent".into(),
            namespace: "cdi".into(),
            verbosity: 2,
            uploadproxy_service: "cdi-uploadproxy".into(),
            log_format: None,
            dataimportcron_poll_interval: None,
        }
    }
}
