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
#   - list: /ui/?page=150 (50 repositories of the 10,002): the first view (which reads the
#     repository names from disk and the figures of its page) and then BENCH_UI_VIEWS (20)
#     views, median and the slowest;
#   - search: /ui/?q=app0777 (10 repositories match), the same;
#   - image: /ui/image/bench:ui-100 (manifest, config with 100 history lines, 100 layers).
# Target: 100 ms for each page's median (issue 17); the first list view is printed with it.

UI_REPOS=${BENCH_UI_REPOS:-10000}
UI_VIEWS=${BENCH_UI_VIEWS:-20}
UI_LAYERS=100
declare -A UI_FIRST=() UI_MEDIAN=() UI_MAX=()

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

# ui_view SERVER PATH: one view, its time to first byte in ms in RESULT
ui_view() {
	local out code t
	out=$(curl -sS --max-time "$T_SMALL" -H 'Accept: text/html' -o "$W/ui/page.html" \
		-w '%{http_code} %{time_starttransfer}' "${URL[$1]}$2") || die "$1: GET $2: curl failed"
	read -r code t <<<"$out"
	[[ $code == 200 ]] || die "$1: GET $2: HTTP $code, expected 200"
	RESULT=$(calc "$t * 1000" 2)
}

# ui_measure SERVER NAME PATH EXPECT: the first view and UI_VIEWS more; the page must
# contain EXPECT
ui_measure() {
	local s=$1 name=$2 path=$3 expect=$4 i all=""
	check_alive "$s"
	ui_view "$s" "$path"
	UI_FIRST[$name]=$RESULT
	grep -qF -- "$expect" "$W/ui/page.html" || die "$s: GET $path does not show '$expect'"
	for ((i = 0; i < UI_VIEWS; i++)); do
		ui_view "$s" "$path"
		all+=" $RESULT"
	done
	UI_MEDIAN[$name]=$(median <<<"$all")
	UI_MAX[$name]=$(tr ' ' '\n' <<<"$all" | awk 'NF' | sort -g | tail -n 1)
	log "$s: UI $name: first ${UI_FIRST[$name]} ms, median ${UI_MEDIAN[$name]} ms of $UI_VIEWS"
}

ui_run() {
	ui_measure wharf-ui list "/ui/?page=150" "Page 150 of"
	ui_measure wharf-ui search "/ui/?q=app0777" "10 repositories"
	ui_measure wharf-ui image "/ui/image/$REPO_NAME:ui-100" "$UI_LAYERS layers"
}

ui_report() {
	local name verdict
	echo
	echo "== web UI: $((UI_REPOS + 2)) repositories on the filesystem, a $UI_LAYERS-layer image (curl time to first byte on loopback)"
	printf '%-8s %-28s %10s %10s %10s %8s %s\n' page path "first ms" "median ms" "max ms" target ""
	for name in list search image; do
		verdict=ok
		awk -v m="${UI_MEDIAN[$name]}" 'BEGIN { exit !(m < 100) }' || verdict=OVER
		case $name in
		list) path="/ui/?page=150" ;;
		search) path="/ui/?q=app0777" ;;
		image) path="/ui/image/$REPO_NAME:ui-100" ;;
		esac
		printf '%-8s %-28s %10s %10s %10s %8s %s\n' "$name" "$path" "${UI_FIRST[$name]}" \
			"${UI_MEDIAN[$name]}" "${UI_MAX[$name]}" "100" "$verdict"
	done
	echo "median and max of $UI_VIEWS views after the first; the first list view reads the repository names from disk."
}
