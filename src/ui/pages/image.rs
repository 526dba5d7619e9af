//! An image: the manifest (pretty and raw), an index's platforms, layers with sizes and
//! media types, the config (entrypoint, env, labels, ports, history) and the referrers as
//! a tree. Everything here comes from the image's pusher, so all of it is escaped text.

use maud::{html, Markup};

use super::layout::{copyable, created, short_digest, size, Frame};
use crate::registry::service::browse::{Body, Descriptor, Image, ImageConfig, Referrer};

pub struct Target<'a> {
    pub repo: &'a str,
    /// `host[:port]` as the browser reached the registry.
    pub host: &'a str,
    pub may_delete: bool,
}

pub fn render(frame: &Frame<'_>, at: &Target<'_>, image: &Image) -> Markup {
    let m = &image.manifest;
    let digest = m.digest.to_string();
    let pretty = serde_json::from_slice::<serde_json::Value>(&m.raw)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| String::from_utf8_lossy(&m.raw).into_owned());
    super::layout::page(
        frame,
        html! {
            nav.crumbs aria-label="Breadcrumb" {
                a href="/ui/" { "Repositories" } " / "
                a href={ "/ui/repo/" (at.repo) } { (at.repo) } " / "
            }
            h1 { (at.repo) "@" code { (short_digest(&digest)) } }
            dl.facts {
                dt { "Digest" } dd { (copyable(&format!("{}/{}@{digest}", at.host, at.repo))) }
                dt { "Type" } dd { (m.media_type) }
                dt { "Tags" } dd { @if image.tags.is_empty() { span.muted { "none" } } @else { (image.tags.join(", ")) } }
            }
            @if at.may_delete {
                a.button.danger href={ "/ui/delete?repo=" (at.repo) "&ref=" (digest) } { "Delete manifest…" }
            }
            @match &m.body {
                Body::Image { config, layers } => {
                    (layer_table(config, layers))
                    @if let Some(c) = &image.config { (config_section(c)) }
                }
                Body::Index { manifests } => (platforms(at.repo, manifests)),
                Body::Unknown => p.muted { "wharf cannot take this manifest apart; its JSON is below." },
            }
            @if !m.annotations.is_empty() {
                h2 { "Annotations" }
                (pairs(m.annotations.iter()))
            }
            h2 { "Referrers" }
            @if image.referrers.is_empty() { p.muted { "No signatures, SBOMs or attestations refer to this manifest." } }
            @else { (referrer_tree(at.repo, &image.referrers)) }
            h2 { "Manifest" }
            details open { summary { "Formatted" } pre.json { code { (pretty) } } }
            details { summary { "Raw (" (m.raw.len()) " bytes, as stored)" } pre.json { code { (String::from_utf8_lossy(&m.raw)) } } }
        },
    )
}

fn layer_table(config: &Descriptor, layers: &[Descriptor]) -> Markup {
    let total: u64 = layers.iter().map(|l| l.size).sum();
    html! {
        h2 { "Layers" }
        p.count { (layers.len()) @if layers.len() == 1 { " layer, " } @else { " layers, " } (size(total)) }
        div.scroll {
            table.layers {
                thead { tr { th { "#" } th { "Digest" } th { "Size" } th { "Media type" } } }
                tbody {
                    @for (i, l) in layers.iter().enumerate() {
                        tr { td { (i + 1) } td { code title=(l.digest) { (short_digest(&l.digest)) } } td.num { (size(l.size)) } td.muted { (l.media_type) } }
                    }
                    tr.config { td { "config" } td { code title=(config.digest) { (short_digest(&config.digest)) } } td.num { (size(config.size)) } td.muted { (config.media_type) } }
                }
            }
        }
    }
}

fn config_section(c: &ImageConfig) -> Markup {
    let run = &c.config;
    html! {
        h2 { "Configuration" }
        dl.facts {
            dt { "Created" } dd { @match &c.created { Some(c) => (created(c)), None => "unknown" } }
            @if let Some(a) = &c.author { dt { "Author" } dd { (a) } }
            dt { "Platform" } dd { (c.os) "/" (c.architecture) @if let Some(v) = &c.variant { "/" (v) } }
            @if let Some(e) = &run.entrypoint { dt { "Entrypoint" } dd { code { (shell_words(e)) } } }
            @if let Some(cmd) = &run.cmd { dt { "Command" } dd { code { (shell_words(cmd)) } } }
            @if let Some(w) = run.working_dir.as_ref().filter(|w| !w.is_empty()) { dt { "Working dir" } dd { code { (w) } } }
            @if let Some(u) = run.user.as_ref().filter(|u| !u.is_empty()) { dt { "User" } dd { code { (u) } } }
            @if let Some(p) = &run.exposed_ports { dt { "Exposed ports" } dd { (p.keys().cloned().collect::<Vec<_>>().join(", ")) } }
        }
        @if let Some(env) = &run.env {
            h3 { "Environment" }
            ul.plain { @for e in env { li { code { (e) } } } }
        }
        @if let Some(labels) = run.labels.as_ref().filter(|l| !l.is_empty()) {
            h3 { "Labels" }
            (pairs(labels.iter()))
        }
        @if !c.history.is_empty() {
            h3 { "History" }
            ol.history {
                @for h in &c.history {
                    li.empty-layer[h.empty_layer] {
                        code { (h.created_by.as_deref().unwrap_or("")) }
                        @if let Some(when) = &h.created { span.muted { " " (created(when)) } }
                        @if let Some(comment) = h.comment.as_ref().filter(|c| !c.is_empty()) { span.muted { " — " (comment) } }
                    }
                }
            }
        }
    }
}

fn platforms(repo: &str, manifests: &[Descriptor]) -> Markup {
    html! {
        h2 { "Platforms" }
        ul.cards {
            @for d in manifests {
                li {
                    a href={ "/ui/image/" (repo) "@" (d.digest) } {
                        (d.platform.as_ref().map(ToString::to_string).unwrap_or_else(|| "unknown platform".into()))
                    }
                    " " code.muted { (short_digest(&d.digest)) } " " span.muted { (size(d.size)) }
                }
            }
        }
    }
}

fn referrer_tree(repo: &str, referrers: &[Referrer]) -> Markup {
    html! {
        ul.tree {
            @for r in referrers {
                li {
                    a href={ "/ui/image/" (repo) "@" (r.descriptor.digest) } {
                        (r.descriptor.artifact_type.as_deref().unwrap_or(&r.descriptor.media_type))
                    }
                    " " code.muted { (short_digest(&r.descriptor.digest)) }
                    @if !r.children.is_empty() { (referrer_tree(repo, &r.children)) }
                }
            }
        }
    }
}

fn pairs<'a>(items: impl Iterator<Item = (&'a String, &'a String)>) -> Markup {
    html! {
        dl.pairs { @for (k, v) in items { dt { code { (k) } } dd { (v) } } }
    }
}

/// A command as a shell would read it back: words with spaces or quotes are quoted.
fn shell_words(words: &[String]) -> String {
    words
        .iter()
        .map(
            |w| match w.is_empty() || w.contains([' ', '"', '\'', '\\', '$']) {
                true => format!("\"{}\"", w.replace('\\', "\\\\").replace('"', "\\\"")),
                false => w.clone(),
            },
        )
        .collect::<Vec<_>>()
        .join(" ")
}
