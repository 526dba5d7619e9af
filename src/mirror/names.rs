//! Which repository a mirror request means: upstream, and in the local cache.

use crate::config::MirrorConfig;
use crate::registry::reference::RepoName;

/// A mirrored repository's two names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    /// As the upstream registry knows it (`library/alpine`).
    pub remote: RepoName,
    /// Where the cache keeps it: under the registry's namespace (`docker.io/library/alpine`),
    /// so mirrors of different registries on one storage root never mix.
    pub local: RepoName,
}

/// What a request's repository name is on a mirror route.
#[derive(Debug, PartialEq, Eq)]
pub enum Mapped {
    /// Under `push_to_local`: an ordinary repository of this registry, name unchanged.
    Local,
    Mirrored(Names),
    /// Outside the route's path namespace (cannot happen once the gateway matched the
    /// prefix), or a name that becomes too long with the namespace in front.
    Invalid(&'static str),
}

/// Maps the name in the request path. The route's path names (`dockerhub/`) are dropped,
/// and Docker Hub's official images get `library/` as docker adds it (`alpine` is
/// `library/alpine`), so `/v2/dockerhub/alpine/...` and `/v2/library/alpine/...?ns=docker.io`
/// reach the same repository.
pub fn map(config: &MirrorConfig, name: &RepoName) -> Mapped {
    let name = name.as_str();
    if config
        .push_to_local
        .as_deref()
        .is_some_and(|ns| name.starts_with(ns))
    {
        return Mapped::Local;
    }
    let Some(rest) = name.strip_prefix(config.strip.as_str()) else {
        return Mapped::Invalid("the name is outside this mirror's namespace");
    };
    let remote = match config.ns == "docker.io" && !rest.contains('/') {
        true => format!("library/{rest}"),
        false => rest.to_owned(),
    };
    // A port's colon cannot be in a repository name: `r.example:5000` keeps its cache under
    // `r.example_5000/`.
    let local = format!("{}{remote}", cache_namespace(&config.ns));
    match (RepoName::parse(&remote), RepoName::parse(&local)) {
        (Ok(remote), Ok(local)) => Mapped::Mirrored(Names { remote, local }),
        _ => Mapped::Invalid("the name is too long once the mirror's namespace is added"),
    }
}

/// Where a mirror of registry `ns` keeps its cache: `docker.io/`, `r.example_5000/`.
pub fn cache_namespace(ns: &str) -> String {
    format!("{}/", ns.replace(':', "_"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, RouteTarget};

    fn config(path: &str, extra: &str) -> MirrorConfig {
        let text = format!(
            "[[server]]\ndefault = true\n[[server.route]]\npath = \"{path}\"\nmirror = \"https://registry-1.docker.io\"\n{extra}"
        );
        match &Config::from_toml(&text, "t").unwrap().servers[0].routes[0].target {
            RouteTarget::Mirror(m) => (**m).clone(),
            other => panic!("{other:?}"),
        }
    }

    fn mapped(c: &MirrorConfig, name: &str) -> Mapped {
        map(c, &RepoName::parse(name).unwrap())
    }

    fn names(remote: &str, local: &str) -> Mapped {
        Mapped::Mirrored(Names {
            remote: RepoName::parse(remote).unwrap(),
            local: RepoName::parse(local).unwrap(),
        })
    }

    #[test]
    fn docker_hub_names_get_library_as_docker_adds_it() {
        let c = config("/v2/dockerhub/", "");
        let alpine = names("library/alpine", "docker.io/library/alpine");
        assert_eq!(mapped(&c, "dockerhub/alpine"), alpine);
        assert_eq!(mapped(&c, "dockerhub/library/alpine"), alpine);
        assert_eq!(
            mapped(&c, "dockerhub/grafana/grafana"),
            names("grafana/grafana", "docker.io/grafana/grafana")
        );
        assert!(matches!(mapped(&c, "other/alpine"), Mapped::Invalid(_)));
        let root = config("/", "");
        assert_eq!(mapped(&root, "library/alpine"), alpine);
        assert_eq!(mapped(&root, "alpine"), alpine);
    }

    #[test]
    fn other_registries_keep_single_names() {
        let c = config("/", "ns = \"ghcr.io\"");
        assert_eq!(mapped(&c, "alpine"), names("alpine", "ghcr.io/alpine"));
        let c = config("/", "ns = \"r.example:5000\"");
        assert_eq!(mapped(&c, "a/b"), names("a/b", "r.example_5000/a/b"));
    }

    #[test]
    fn the_local_namespace_is_left_alone() {
        let c = config("/", "push_to_local = \"team/\"");
        assert_eq!(mapped(&c, "team/app"), Mapped::Local);
        assert_eq!(
            mapped(&c, "teams/app"),
            names("teams/app", "docker.io/teams/app")
        );
    }
}
