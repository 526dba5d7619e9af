# shellcheck shell=bash
# Sourced by scripts/bench for --gc / --gc-only (BENCH_GC): wharf's garbage collection
# against registry:2's, on the same data (issue 16).
#
# The data: examples/gen_registry (built with `cargo build --release --example
# gen-registry` when GEN_BIN is not given) writes BENCH_GC_REPOS (2000) repositories and
# BENCH_GC_BLOBS (20000) blobs, half of them garbage, straight into registry:2's layout
# (seed BENCH_GC_SEED, 1; every file dated a week ago, past wharf's default grace of a
# day), with the list of the garbage it wrote. Untimed.
#
# Per round, in alternating order, each collector gets a fresh copy of that directory
# (cp -a), the page cache is dropped (when root, as for the other steps), and then one full
# collection runs, timed with /usr/bin/time (wall, and user+sys CPU of the process):
#   - wharf-gc: `wharf gc --config C` ([storage] root = the copy; wharf would also run it
#     beside a serving `wharf serve`: see the latency step);
#   - registry2-gc: `docker-registry garbage-collect C.yml` (the registry must be stopped
#     or read-only meanwhile; here none is running).
# Afterwards each copy's blobs are listed: the blobs freed (count and bytes) must be exactly
# the generator's garbage for both, and on wharf's copy registry:2's `garbage-collect
# --dry-run` must find nothing more to delete. Target: wharf at least 5x faster (wall).
#
# Then, on the same round, the latency a client sees while wharf collects under a serving
# wharf (gc_latency): `wharf serve` on another fresh copy; a sequential client asks HEAD of
# GC_HEADS tagged manifests (one curl per batch of GC_BATCH, keep-alive) and pushes and
# pulls the tiny image between batches, for as long as `wharf gc` runs beside the server,
# and for as long again with nothing else running (idle, first, after one untimed HEAD of
# every tag). Every HEAD must answer
# 200 and every push and pull succeed; the GC run must free exactly the garbage too.
# Target: p99 HEAD during GC within 2x of idle.

GC_REPOS=${BENCH_GC_REPOS:-2000}
GC_BLOBS=${BENCH_GC_BLOBS:-20000}
GC_SEED=${BENCH_GC_SEED:-1}
T_GC=${BENCH_GC_TIMEOUT:-1800}
GC_BATCH=50
GC_IDLE_MIN=${BENCH_GC_IDLE_MIN:-5}
for v in GC_REPOS GC_BLOBS GC_SEED T_GC GC_IDLE_MIN; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "BENCH_${v#GC_} must be a whole number (got '${!v}')"
done

# gc_setup: the generator, the data and its list of garbage
gc_setup() {
	local out
	if [[ -z ${GEN_BIN:-} ]]; then
		GEN_BIN=$REPO/target/release/examples/gen-registry
		if [[ ! -x $GEN_BIN ]]; then
			log "$GEN_BIN is missing; running cargo build --release --example gen-registry"
			(cd "$REPO" && cargo build --release --example gen-registry) || die "building gen-registry failed"
		fi
	fi
	[[ -x $GEN_BIN ]] || die "GEN_BIN=$GEN_BIN is not an executable file"
	log "gc: writing $GC_REPOS repositories and $GC_BLOBS blobs (seed $GC_SEED) with $GEN_BIN (untimed)"
	out=$("$GEN_BIN" --root "$W/gc-src" --repos "$GC_REPOS" --blobs "$GC_BLOBS" --seed "$GC_SEED" \
		--garbage-list "$W/gc-garbage.txt") || die "gen-registry failed"
	log "gc: $out"
	GC_GARBAGE_N=$(wc -l <"$W/gc-garbage.txt")
	GC_GARBAGE_BYTES=$(awk '{ n += $2 } END { printf "%.0f", n }' "$W/gc-garbage.txt")
	GC_SUMMARY=$out
	# The tagged manifests the latency step asks for (repo/name:tag as URL paths)
	(cd "$W/gc-src/docker/registry/v2/repositories" &&
		find . -path '*/_manifests/tags/*/current/link' -printf '%P\n') |
		sed -E 's#^(.*)/_manifests/tags/([^/]*)/current/link$#/v2/\1/manifests/\2#' |
		LC_ALL=C sort >"$W/gc-heads.txt"
	mapfile -t GC_HEAD_PATHS <"$W/gc-heads.txt"
	GC_HEADS=${#GC_HEAD_PATHS[@]}
	((GC_HEADS > 0)) || die "gen-registry wrote no tags"
}

# gc_blobs ROOT: "DIGEST SIZE" of every blob under ROOT, sorted
gc_blobs() {
	find "$1/docker/registry/v2/blobs" -name data -printf '%h %s\n' |
		awk '{ n = split($1, p, "/"); print "sha256:" p[n], $2 }' | LC_ALL=C sort
}

# gc_config SERVER ROOT: the collector's config file for ROOT (its path in GC_CFG)
gc_config() {
	case $1 in
	wharf-gc)
		GC_CFG=$W/$1.toml
		printf '[storage]\nroot = "%s"\n' "$2" >"$GC_CFG"
		;;
	registry2-gc)
		GC_CFG=$W/$1.yml
		printf 'version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\n' "$2" >"$GC_CFG"
		;;
	esac
}

# gc_collect SERVER ROOT: one full collection, timed; sets GC_WALL and GC_CPU (seconds)
gc_collect() {
	local s=$1 root=$2 cmd u sys
	gc_config "$s" "$root"
	case $s in
	wharf-gc) cmd=("$WHARF_BIN" gc --config "$GC_CFG") ;;
	registry2-gc) cmd=(docker-registry garbage-collect "$GC_CFG") ;;
	esac
	timeout "$T_GC" /usr/bin/time -f '%e %U %S' -o "$W/$s.time" "${cmd[@]}" >"$W/$s.gc.out" 2>&1 ||
		{ tail -n 30 "$W/$s.gc.out" >&2; die "$s: ${cmd[*]} failed or took over ${T_GC}s"; }
	read -r GC_WALL u sys <"$W/$s.time"
	GC_CPU=$(calc "$u + $sys" 2)
}

# registry2_leftovers ROOT: how many blobs registry:2's garbage-collect --dry-run would
# still delete in ROOT
registry2_leftovers() {
	gc_config registry2-gc "$1"
	docker-registry garbage-collect --dry-run "$GC_CFG" >"$W/registry2-dry.out" 2>&1 ||
		{ tail -n 30 "$W/registry2-dry.out" >&2; die "registry:2's garbage-collect --dry-run failed"; }
	grep -c 'blob eligible for deletion' "$W/registry2-dry.out" || true
}

# gc_round R: both collectors on fresh copies, in alternating order
gc_round() {
	local r=$1 s root order n bytes left
	if ((r % 2)); then order=(wharf-gc registry2-gc); else order=(registry2-gc wharf-gc); fi
	log "round $r of $RUNS, garbage collection: ${order[*]}"
	for s in "${order[@]}"; do
		root=$W/$s-data
		rm -rf "$root"
		cp -a "$W/gc-src" "$root"
		gc_blobs "$root" >"$W/$s.before"
		settle
		gc_collect "$s" "$root"
		gc_blobs "$root" >"$W/$s.after"
		LC_ALL=C comm -23 "$W/$s.before" "$W/$s.after" >"$W/$s.freed"
		n=$(wc -l <"$W/$s.freed")
		bytes=$(awk '{ n += $2 } END { printf "%.0f", n }' "$W/$s.freed")
		cmp -s "$W/$s.freed" "$W/gc-garbage.txt" ||
			die "$s: freed $n blobs ($bytes bytes), not the $GC_GARBAGE_N garbage blobs ($GC_GARBAGE_BYTES bytes) written (diff $W/$s.freed $W/gc-garbage.txt)"
		if [[ $s == wharf-gc ]]; then
			left=$(registry2_leftovers "$root")
			((left == 0)) || die "after wharf's GC, registry:2's garbage-collect --dry-run would delete $left more blobs"
		fi
		[[ $s != wharf-gc ]] || GC_LAST_WALL=$GC_WALL
		record "full GC wall s" lower "$s" "$GC_WALL"
		record "full GC CPU s (user+sys)" lower "$s" "$GC_CPU"
		record "blobs freed" same "$s" "$n"
		record "MB freed" same "$s" "$(calc "$bytes / 1e6" 3)"
		rm -rf "$root"
	done
	log "round $r of $RUNS, latency idle and during wharf's GC beside a serving wharf"
	gc_latency
}

# gc_batch SERVER OUT: HEAD of the next GC_BATCH tagged manifests in one curl (keep-alive),
# each one's seconds appended to OUT.heads; then the tiny image pushed and pulled, the
# seconds that took appended to OUT.pushpull
GC_NEXT=0
gc_batch() {
	local s=$1 out=$2 args=() i t0 bad
	for ((i = 0; i < GC_BATCH; i++)); do
		args+=(-o /dev/null "${URL[$s]}${GC_HEAD_PATHS[GC_NEXT]}")
		GC_NEXT=$(((GC_NEXT + 1) % GC_HEADS))
	done
	curl -sS -I --max-time "$T_SMALL" -H "Accept: $MANIFEST_ACCEPT" -w '%{http_code} %{time_total}\n' \
		"${args[@]}" >"$W/gc-batch.out" || die "$s: HEAD of tagged manifests: curl failed"
	bad=$(awk '$1 != 200' "$W/gc-batch.out" | head -n 3)
	[[ -z $bad ]] || die "$s: HEAD of a tagged manifest did not answer 200 (code, seconds: $bad)"
	awk '{ print $2 }' "$W/gc-batch.out" >>"$out.heads"
	t0=$EPOCHREALTIME
	push_small_image "$s"
	pull_small_image "$s"
	printf '%s\n' "$(calc "$EPOCHREALTIME - $t0" 6)" >>"$out.pushpull"
}

# percentile P FILE: the P-th percentile (nearest rank) of FILE's numbers, in ms
percentile() {
	sort -g "$2" | awk -v p="$1" '{ v[NR] = $1 } END { i = int(NR * p / 100 + 0.999999); if (i < 1) i = 1; printf "%.2f", v[i] * 1000 }'
}

# gc_latency: HEAD, push and pull latency idle and then while `wharf gc` runs beside the
# serving wharf, on a fresh copy; the run must free exactly the garbage
gc_latency() {
	local s=wharf-gcload root gc_pid deadline n phase rc=0
	root=$W/$s-data
	rm -rf "$root" "$W/gc-idle".* "$W/gc-during".* "$W/gc-warm".*
	cp -a "$W/gc-src" "$root"
	gc_blobs "$root" >"$W/$s.before"
	start_wharf "$s"
	settle
	# Untimed: every tagged manifest once, so both phases measure the server, not a cold
	# page cache (the first run's idle p99 was mostly first reads).
	for ((n = 0; n < GC_HEADS; n += GC_BATCH)); do gc_batch "$s" "$W/gc-warm"; done
	# Idle: as long as the collector alone took this round, and at least GC_IDLE_MIN s.
	deadline=$(calc "$EPOCHREALTIME + ($GC_LAST_WALL > $GC_IDLE_MIN ? $GC_LAST_WALL : $GC_IDLE_MIN)" 3)
	while awk -v d="$deadline" -v t="$EPOCHREALTIME" 'BEGIN { exit !(t < d) }'; do
		gc_batch "$s" "$W/gc-idle"
	done
	gc_config wharf-gc "$root"
	"$WHARF_BIN" gc --config "$GC_CFG" >"$W/$s.gc.out" 2>&1 &
	gc_pid=$!
	while kill -0 "$gc_pid" 2>/dev/null; do gc_batch "$s" "$W/gc-during"; done
	wait "$gc_pid" || rc=$?
	check_alive "$s"
	kill "${PID[$s]}" && wait "${PID[$s]}" || true
	unset "PID[$s]"
	if ((rc)) && grep -q 'stop the server' "$W/$s.gc.out"; then
		# This wharf's `wharf gc` takes the filesystem root's lock, so it cannot run beside
		# a server: there is no online collection to measure.
		GC_LATENCY_SKIPPED=$(tail -n 1 "$W/$s.gc.out")
		log "$s: latency step skipped: $GC_LATENCY_SKIPPED"
		rm -rf "$root"
		return
	fi
	((rc == 0)) || { tail -n 30 "$W/$s.gc.out" >&2; die "$s: wharf gc beside the server failed"; }
	gc_blobs "$root" >"$W/$s.after"
	LC_ALL=C comm -23 "$W/$s.before" "$W/$s.after" >"$W/$s.freed"
	n=$(wc -l <"$W/$s.freed")
	cmp -s "$W/$s.freed" "$W/gc-garbage.txt" ||
		die "$s: wharf gc beside the server freed $n blobs, not the $GC_GARBAGE_N garbage blobs written"
	for phase in idle during; do
		n=$(wc -l <"$W/gc-$phase.heads")
		record "HEAD manifest p50 ms" lower "gc-$phase" "$(percentile 50 "$W/gc-$phase.heads")"
		record "HEAD manifest p99 ms" lower "gc-$phase" "$(percentile 99 "$W/gc-$phase.heads")"
		record "HEADs measured" same "gc-$phase" "$n"
		record "push+pull tiny image p50 ms" lower "gc-$phase" "$(percentile 50 "$W/gc-$phase.pushpull")"
		record "push+pull tiny image max ms" lower "gc-$phase" "$(percentile 100 "$W/gc-$phase.pushpull")"
		record "push+pulls measured" same "gc-$phase" "$(wc -l <"$W/gc-$phase.pushpull")"
	done
	rm -rf "$root"
}

gc_report() {
	local a b verdict
	echo
	echo "== garbage collection: wharf gc vs docker-registry garbage-collect (Distribution), one full run each on a copy of the same data"
	report wharf-gc registry2-gc registry:2
	a=$(median <<<"${R[full GC wall s,wharf-gc]}")
	b=$(median <<<"${R[full GC wall s,registry2-gc]}")
	verdict=ok
	awk -v a="$a" -v b="$b" 'BEGIN { exit !(a > 0 && b / a >= 5) }' || verdict=UNDER
	echo
	echo "data: $GC_SUMMARY"
	echo "(examples/gen_registry, seed $GC_SEED); page cache dropped before each run: $( ((DROP_CACHES)) && echo yes || echo no)."
	echo "Both freed exactly the $GC_GARBAGE_N garbage blobs ($GC_GARBAGE_BYTES bytes) in every round; after wharf's run,"
	echo "registry:2's garbage-collect --dry-run found nothing more. registry:2 needs the registry stopped or read-only; wharf does not."
	echo "wharf's full GC is $(calc "$b / $a" 1)x faster (wall; target 5x or more): $verdict"
	echo
	echo "== latency seen by a client of a serving wharf: during \`wharf gc\` (beside it, same storage) vs idle"
	if [[ -n ${GC_LATENCY_SKIPPED:-} ]]; then
		echo "not measured: \`wharf gc\` refused to run beside the server: $GC_LATENCY_SKIPPED"
		return
	fi
	report gc-during gc-idle "idle" "during GC"
	a=$(median <<<"${R[HEAD manifest p99 ms,gc-during]}")
	b=$(median <<<"${R[HEAD manifest p99 ms,gc-idle]}")
	verdict=ok
	awk -v a="$a" -v b="$b" 'BEGIN { exit !(b > 0 && a / b <= 2) }' || verdict=OVER
	echo
	echo "One sequential client: HEAD of the $GC_HEADS tagged manifests in turn, $GC_BATCH per curl (keep-alive),"
	echo "the tiny image pushed and pulled (5 requests, a curl each) between batches; idle for as long as"
	echo "the collector alone took (at least ${GC_IDLE_MIN}s), then for as long as \`wharf gc\` ran; before them the"
	echo "page cache is dropped and every tag HEADed once, untimed. Every HEAD answered 200; the run beside the"
	echo "server freed exactly the garbage."
	echo "p99 HEAD during GC is $(calc "$a / $b" 2)x idle (target 2x or less): $verdict"
}
