# shellcheck shell=bash
# Sourced by scripts/bench for --ui / --ui-only (BENCH_UI): how long wharf's web UI
# takes server-side on a big registry. Not a comparison: registry:2 has no UI.
#
# One more wharf (wharf-ui, plain HTTP, filesystem storage in the temp dir, the UI on as
# in the default server block). Into it, with curl (POST, PUT ?digest= per blob, then the
# manifest): the image bench:ui-100, 100 layers of 1 KiB random data each and a config
# whose history has a line per layer, and the tiny image as seed:latest; then
# BENCH_UI_REPOS (10000) more repositories, team<N>/app<NNNNN>, each a copy of seed's
# directory (made with python3 while wharf runs: its repository index has not been read
# yet, so the first view reads them all, as after a restart; pushing 10,000 images through
# the API would take most of an hour).
#
# Then, each with curl on loopback, time to the first byte of the answer
# (%{time_starttransfer}: wharf renders a page whole before sending it, so this is the
# server's time plus a loopback round trip), status 200 checked:
#   - list: /ui/?page=150 (50 repositories of the 10,002): the first view since start-up,
#     whose repository index has never been read (it reads the names from disk and the
#     figures of its page; a wharf that answers "still reading" with a 503 at first is
#     asked again every 100 ms, and the time until the list is shown is printed too), then
#     BENCH_UI_VIEWS (20) views, median and the slowest;
#   - search: /ui/?q=app0777 (10 repositories match), the same;
#   - image: /ui/image/bench:ui-100 (manifest, config with 100 history lines, 100 layers);
#   - catalog: /v2/_catalog?n=10000 (the API's largest page; it reads storage every time).
# Then a restart, as after a reboot: wharf-ui stops (SIGTERM), the page cache is dropped
# (sync, then echo 3 >/proc/sys/vm/drop_caches, when allowed: see BENCH_DROP_CACHES), and
# wharf-ui starts again on the same root; the first view of each page after it is timed.
# Target: 100 ms for every UI view (issue 17), the first after the restart included; the
# API catalog is shown beside them, without a target.

UI_REPOS=${BENCH_UI_REPOS:-10000}
UI_VIEWS=${BENCH_UI_VIEWS:-20}
UI_LAYERS=100
declare -A UI_FIRST=() UI_MEDIAN=() UI_MAX=() UI_RESTART=()
UI_READY=""

# ui_push_image SERVER: bench:ui-100, UI_LAYERS layers and a config
ui_push_image() {
	local s=$1 i f d layers="" history="" sep=""
	mkdir -p "$W/ui"
	for ((i = 1; i <= UI_LAYERS; i++)); do
		f=$W/ui/layer.$i
		head -c 1024 /dev/urandom >"$f"
		d=$(sha "$f")
		start_upload "$s"
		curl_req 201 "$s: PUT UI layer $i" -X PUT -T "$f" -H 'Content-Type: application/octet-stream' \
			"$(with_digest "$UPLOAD_URL" "$d")"
		layers+="$sep{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"$d\",\"size\":1024}"
		history+="$sep{\"created\":\"2026-01-01T00:00:00Z\",\"created_by\":\"RUN step $i \\u0026\\u0026 make install\"}"
		sep=,
	done
	printf '{"architecture":"amd64","os":"linux","created":"2026-01-01T00:00:00Z","config":{"Env":["PATH=/usr/bin"],"Labels":{"bench":"ui"}},"history":[%s]}' \
		"$history" >"$W/ui/config.json"
	d=$(sha "$W/ui/config.json")
	start_upload "$s"
	curl_req 201 "$s: PUT UI config" -X PUT -T "$W/ui/config.json" -H 'Content-Type: application/octet-stream' \
		"$(with_digest "$UPLOAD_URL" "$d")"
	printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[%s]}' \
		"$d" "$(stat -c %s "$W/ui/config.json")" "$layers" >"$W/ui/manifest.json"
	curl_req 201 "$s: PUT UI manifest" -X PUT -T "$W/ui/manifest.json" \
		-H 'Content-Type: application/vnd.oci.image.manifest.v1+json' "${URL[$s]}/v2/$REPO_NAME/manifests/ui-100"
}

# ui_copy_repositories SERVER: UI_REPOS copies of seed's directory
ui_copy_repositories() {
	local repos=$W/$1-data/docker/registry/v2/repositories
	[[ -d $repos/seed ]] || die "$1: no $repos/seed to copy"
	python3 - "$repos" seed "$UI_REPOS" <<'EOF' || die "copying repositories failed"
import shutil, sys
repos, seed, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(n):
    shutil.copytree(f"{repos}/{seed}", f"{repos}/team{i % 100}/app{i:05d}")
EOF
}

ui_setup() {
	start_wharf wharf-ui
	log "wharf-ui: pushing bench:ui-100 ($UI_LAYERS layers) and copying it into $UI_REPOS repositories (untimed)"
	ui_push_image wharf-ui
	REPO_NAME=seed push_manifest wharf-ui
	ui_copy_repositories wharf-ui
}

# ui_view SERVER PATH: one view, its time to first byte in ms in RESULT and its status in
# UI_CODE (200 checked, and with UI_STILL_READING=1 also 503, the "still reading" page)
ui_view() {
	local out t
	out=$(curl -sS --max-time "$T_SMALL" -H 'Accept: text/html' -o "$W/ui/page.html" \
		-w '%{http_code} %{time_starttransfer}' "${URL[$1]}$2") || die "$1: GET $2: curl failed"
	read -r UI_CODE t <<<"$out"
	[[ $UI_CODE == 200 || ($UI_CODE == 503 && ${UI_STILL_READING:-0} == 1) ]] ||
		die "$1: GET $2: HTTP $UI_CODE, expected 200"
	RESULT=$(calc "$t * 1000" 2)
}

# ui_first_list SERVER PATH: the first view (in RESULT); while it answers 503 (the
# repository names are still being read), again every 100 ms; UI_READY is the time from
# the first request until the list was shown, in ms
ui_first_list() {
	local s=$1 path=$2 t0 first
	t0=$(date +%s%N)
	UI_STILL_READING=1 ui_view "$s" "$path"
	first=$RESULT
	while [[ $UI_CODE == 503 ]]; do
		check_alive "$s"
		sleep 0.1
		UI_STILL_READING=1 ui_view "$s" "$path"
	done
	UI_READY=$(calc "($(date +%s%N) - $t0) / 1000000" 2)
	RESULT=$first
}

# ui_measure SERVER NAME PATH EXPECT: the first view and UI_VIEWS more; the page must
# contain EXPECT
ui_measure() {
	local s=$1 name=$2 path=$3 expect=$4 i all=""
	check_alive "$s"
	if [[ $name == list ]]; then ui_first_list "$s" "$path"; else ui_view "$s" "$path"; fi
	UI_FIRST[$name]=$RESULT
	for ((i = 0; i < UI_VIEWS; i++)); do
		ui_view "$s" "$path"
		all+=" $RESULT"
	done
	grep -qF -- "$expect" "$W/ui/page.html" || die "$s: GET $path does not show '$expect'"
	UI_MEDIAN[$name]=$(median <<<"$all")
	UI_MAX[$name]=$(tr ' ' '\n' <<<"$all" | awk 'NF' | sort -g | tail -n 1)
	log "$s: UI $name: first ${UI_FIRST[$name]} ms, median ${UI_MEDIAN[$name]} ms of $UI_VIEWS"
}

# ui_restart SERVER: stops it (SIGTERM), drops the page cache when allowed, starts it again
# on the same root
ui_restart() {
	local s=$1 p=${PID[$1]}
	kill "$p"
	for _ in $(seq 300); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
	! kill -0 "$p" 2>/dev/null || die "$s did not stop within 30 s of SIGTERM"
	wait "$p" 2>/dev/null || true
	settle
	start_wharf "$s"
}

UI_PAGES=(list search image catalog)
declare -A UI_PATH=([list]="/ui/?page=150" [search]="/ui/?q=app0777" [catalog]="/v2/_catalog?n=10000")
declare -A UI_EXPECT=([list]="Page 150 of" [search]="10 repositories" [image]="$UI_LAYERS layers" [catalog]='"team0/app00000"')

ui_run() {
	local name
	UI_PATH[image]="/ui/image/$REPO_NAME:ui-100"
	for name in "${UI_PAGES[@]}"; do
		ui_measure wharf-ui "$name" "${UI_PATH[$name]}" "${UI_EXPECT[$name]}"
	done
	log "wharf-ui: the first list view showed the list after $UI_READY ms"
	ui_restart wharf-ui
	for name in "${UI_PAGES[@]}"; do
		if [[ $name == list ]]; then ui_first_list wharf-ui "${UI_PATH[$name]}"; else ui_view wharf-ui "${UI_PATH[$name]}"; fi
		grep -qF -- "${UI_EXPECT[$name]}" "$W/ui/page.html" || die "wharf-ui: GET ${UI_PATH[$name]} after the restart does not show '${UI_EXPECT[$name]}'"
		UI_RESTART[$name]=$RESULT
	done
	log "wharf-ui: after the restart, the first list view showed the list after $UI_READY ms"
}

ui_report() {
	local name verdict target
	echo
	echo "== web UI: $((UI_REPOS + 2)) repositories on the filesystem, a $UI_LAYERS-layer image (curl time to first byte on loopback)"
	printf '%-8s %-28s %10s %10s %10s %12s %8s %s\n' page path "first ms" "median ms" "max ms" "restart ms" target ""
	for name in "${UI_PAGES[@]}"; do
		verdict=ok target=100
		awk -v m="${UI_MEDIAN[$name]}" -v r="${UI_RESTART[$name]}" 'BEGIN { exit !(m < 100 && r < 100) }' || verdict=OVER
		# The API's catalog walks storage on every call (it must be exact across nodes):
		# shown beside the UI, with no target of its own.
		[[ $name != catalog ]] || verdict="(API: walks storage)" target=-
		printf '%-8s %-28s %10s %10s %10s %12s %8s %s\n' "$name" "${UI_PATH[$name]}" "${UI_FIRST[$name]}" \
			"${UI_MEDIAN[$name]}" "${UI_MAX[$name]}" "${UI_RESTART[$name]}" "$target" "$verdict"
	done
	echo "first: the first view since start-up, the repositories copied in behind wharf's back; median and"
	echo "max of $UI_VIEWS views after it; restart: the first view after wharf-ui restarted (page cache"
	echo "dropped: $DROP_CACHES). The first list view since start-up showed the list after its first answer,"
	echo "or after \"still reading\" pages, within $UI_READY ms (after the restart; see the log for before it)."
}
