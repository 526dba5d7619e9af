//! `ui` of a `[[server]]` block: whether the web UI is served under `/ui/`.

use super::servers::{RouteConfig, RouteTarget};
use super::{Check, ConfigError};

/// Whether a server block serves the UI: `ui = true` needs `/v2/` to reach a registry
/// route and no route of its own under `/ui`; unset, the UI is on where both hold and
/// `/ui/` would otherwise reach a registry route (or nothing).
pub fn enabled(
    check: &Check<'_>,
    i: usize,
    ui: Option<bool>,
    routes: &[RouteConfig],
) -> Result<bool, ConfigError> {
    // Routes are sorted longest prefix first, as the gateway matches them.
    let api = routes.iter().find(|r| "/v2/".starts_with(&r.prefix));
    let registry = matches!(api.map(|r| &r.target), Some(RouteTarget::Registry { .. }));
    let taken = routes
        .iter()
        .find(|r| r.prefix.starts_with("/ui/") || r.prefix == "/ui");
    // Unset, the UI never takes `/ui/` away from an upstream or a redirect.
    let free = routes
        .iter()
        .find(|r| "/ui/".starts_with(&r.prefix))
        .is_none_or(|r| matches!(r.target, RouteTarget::Registry { .. }));
    match (ui, registry, taken) {
        (Some(false), _, _) => Ok(false),
        (None, registry, taken) => Ok(registry && taken.is_none() && free),
        (Some(true), false, _) => Err(check.invalid(
            format!("server[{i}].ui"),
            "is true, but /v2/ on this server does not reach a registry route",
            "add a registry route (path = \"/\"), or remove ui",
        )),
        (Some(true), true, Some(r)) => Err(check.invalid(
            format!("server[{i}].ui"),
            format!("is true, but the route {:?} already serves /ui", r.prefix),
            "move that route, or set ui = false",
        )),
        (Some(true), true, None) => Ok(true),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn ui_of(text: &str) -> Result<bool, String> {
        Config::from_toml(text, "test")
            .map(|c| c.servers[0].ui)
            .map_err(|e| e.to_string())
    }

    const REGISTRY: &str = "[[server.route]]\npath = \"/\"\nregistry = {}\n";
    const UPSTREAM: &str = "[[server.route]]\npath = \"/\"\nupstream = \"http://127.0.0.1:9\"\n";

    #[test]
    fn the_quick_start_has_the_ui() {
        assert_eq!(ui_of(""), Ok(true));
        assert_eq!(ui_of("[[server]]\ndefault = true\n"), Ok(true));
        assert_eq!(ui_of("[[server]]\ndefault = true\nui = false\n"), Ok(false));
    }

    #[test]
    fn unset_the_ui_never_takes_paths_from_an_upstream() {
        let proxied = format!("[[server]]\ndefault = true\n{UPSTREAM}");
        assert_eq!(ui_of(&proxied), Ok(false));
        // The registry on /v2/, an application upstream on / that may have its own /ui/.
        let mixed = format!(
            "[[server]]\ndefault = true\n{UPSTREAM}[[server.route]]\npath = \"/v2/\"\nregistry = {{}}\n"
        );
        assert_eq!(ui_of(&mixed), Ok(false));
        let forced = mixed.replace("default = true\n", "default = true\nui = true\n");
        assert_eq!(
            ui_of(&forced),
            Ok(true),
            "said explicitly, the UI takes /ui/"
        );
    }

    #[test]
    fn ui_true_needs_a_registry_and_a_free_path() {
        let e = ui_of(&format!(
            "[[server]]\ndefault = true\nui = true\n{UPSTREAM}"
        ))
        .unwrap_err();
        assert!(e.contains("server[0].ui") && e.contains("registry"), "{e}");
        let e = ui_of(&format!(
            "[[server]]\ndefault = true\nui = true\n{REGISTRY}[[server.route]]\npath = \"/ui/\"\nupstream = \"http://127.0.0.1:9\"\n"
        ))
        .unwrap_err();
        assert!(e.contains("server[0].ui") && e.contains("/ui/"), "{e}");
        assert_eq!(
            ui_of(&format!(
                "[[server]]\ndefault = true\nui = true\n{REGISTRY}"
            )),
            Ok(true)
        );
    }
}
