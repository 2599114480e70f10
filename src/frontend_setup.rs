//! The front end's configuration, built from the validated [`Config`] for both modes: the
//! embedded-mode server process and the daemon-mode supervisor build the same front end,
//! and differ only in how many requests it admits at once and whether it watches the
//! application's entry file. (Its own module: `process` may not name the front end, which
//! names the daemon side, which names `process`.)

use std::sync::Arc;

use crate::cli::Config;
use crate::frontend::{self, FrontendConfig, ReloadWatch};
use crate::process;

/// The front end of `config`, admitting `admission_slots` requests at once
/// (`--max-clients`, or this process's share of it), with `reload_watch` when the front
/// end itself reloads the application on a change of its entry file (embedded mode).
pub fn frontend_config(
    config: &Config,
    admission_slots: usize,
    reload_watch: Option<Arc<ReloadWatch>>,
) -> FrontendConfig {
    FrontendConfig {
        access_log: process::open_access_log(config),
        timeouts: config.server.client_timeouts,
        limit_request_body: config.server.limit_request_body,
        request_buffer_size: config.server.request_buffer_size,
        response_buffer_size: config.server.response_buffer_size,
        admission: Some(Arc::new(tokio::sync::Semaphore::new(admission_slots))),
        shutdown_timeout: config.processes.shutdown_timeout,
        static_files: frontend::StaticFiles::from_aliases(&config.server.url_aliases)
            .with_site(frontend::Site {
                document_root: config.server.site.document_root.clone(),
                directory_index: config.server.site.directory_index.clone(),
                mount_point: config.server.site.mount_point.clone(),
                directory_listing: config.server.site.directory_listing,
                mime_types: config.server.site.mime_types.clone(),
                handlers: config
                    .server
                    .site
                    .handlers
                    .iter()
                    .map(|(extension, _)| extension.clone())
                    .collect(),
                php: config.server.gateways.php.is_some(),
                cgi: config.server.gateways.cgi,
            })
            .with_static_site(config.server.static_site.clone()),
        error_documents: frontend::ErrorDocuments::new(
            &config.server.error_documents,
            config.server.error_override,
        ),
        compress_responses: config.server.compress_responses,
        head_to_get: config.server.maps_head_to_get(),
        draining: std::sync::atomic::AtomicBool::new(false),
        access: crate::auth::Gate::new(&config.access),
        front_door: config.server.front_door.clone(),
        gateways: frontend::Gateways::new(
            config
                .server
                .gateways
                .php
                .as_ref()
                .map(|_| crate::cli::GatewayConfig::php_socket(&config.server.server_root)),
            config.server.gateways.cgi,
            config.processes.request_timeout,
            config.server.site.document_root.as_deref(),
            &config.server.server_name,
        ),
        proxy: config.server.proxy.clone(),
        http2: config.server.http2,
        operations: frontend::Operations::new(
            config.server.operations.health_check_path.clone(),
            config.server.operations.metrics_path.clone(),
            config
                .server
                .operations
                .server_status
                .then(|| crate::cli::SERVER_STATUS_PATH.to_owned()),
            config.processes.n_threads,
        ),
        reload_watch,
    }
}
