//! docker's v1 search API, which `docker search` still uses: `GET /v1/_ping` and
//! `GET /v1/search?q=&n=&page=`, matching repository names by substring.

use http::request::Parts;
use http::{Response, StatusCode};
use serde_json::json;

use crate::http_util::{query_param, Body, Reply};
use crate::registry::error::{ApiError, ApiResult, Code};
use crate::registry::Registry;

const DEFAULT_PAGE_SIZE: usize = 25;
const MAX_PAGE_SIZE: usize = 100;

pub async fn handle(registry: &Registry, req: &Parts) -> ApiResult<Response<Body>> {
    match req.uri.path() {
        "/v1/_ping" => Ok(Reply::new(StatusCode::OK).json(&json!(true))),
        "/v1/search" => search(registry, req).await,
        other => Err(ApiError::new(
            Code::NotFound,
            format!("no API endpoint at {other:?}"),
        )),
    }
}

async fn search(registry: &Registry, req: &Parts) -> ApiResult<Response<Body>> {
    let query = req.uri.query();
    let q = query_param(query, "q").unwrap_or_default();
    let number = |key: &str, default: usize| -> ApiResult<usize> {
        match query_param(query, key) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| {
                ApiError::new(
                    Code::PaginationNumberInvalid,
                    format!("{key} must be a positive integer"),
                )
            }),
        }
    };
    let page_size = number("n", DEFAULT_PAGE_SIZE)?.clamp(1, MAX_PAGE_SIZE);
    let page = number("page", 1)?.max(1);
    let needle = q.to_lowercase();
    let matches: Vec<String> = registry
        .visible_repositories(req)
        .await?
        .into_iter()
        .filter(|name| name.contains(&needle))
        .collect();
    let num_results = matches.len();
    // `page` is the client's number, up to usize::MAX: a page past the end is empty.
    let skip = (page - 1).saturating_mul(page_size);
    let results: Vec<_> = matches
        .into_iter()
        .skip(skip)
        .take(page_size)
        .map(|name| {
            json!({
                "name": name,
                "description": "",
                "star_count": 0,
                "is_official": false,
                "is_automated": false,
            })
        })
        .collect();
    Ok(Reply::new(StatusCode::OK).json(&json!({
        "query": q,
        "num_results": num_results,
        "num_pages": num_results.div_ceil(page_size),
        "page": page,
        "page_size": page_size,
        "results": results,
    })))
}
