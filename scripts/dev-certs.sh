#!/usr/bin/env bash
# dev-certs.sh - a local CA and a server certificate for trying arca with TLS.
#
# Usage: scripts/dev-certs.sh [OUT_DIR=./dev-certs]
#   Writes OUT_DIR/ca.crt, ca.key, server.crt, server.key (ECDSA P-256, SHA-256).
#   Server certificate: CN=localhost, SAN DNS:localhost, IP:127.0.0.1, IP:::1,
#   serverAuth, valid DAYS (default 397) days; CA valid CA_DAYS (default 3650) days.
#   Keys are written with mode 0600. An existing CA in OUT_DIR is reused (so clients
#   that already trust it keep working); the server certificate is always renewed.
#   FORCE=1 makes a new CA too. EXTRA_SANS="DNS:arca.local,IP:10.0.0.5" adds names.
#   KEY_UID=10001 chowns server.key to that uid (the Docker image's arca user; needs root).
# Needs: openssl.
# For development only: the CA key sits unencrypted beside the certificates.
set -euo pipefail

OUT=${1:-./dev-certs}
DAYS=${DAYS:-397}
CA_DAYS=${CA_DAYS:-3650}
SANS="DNS:localhost,IP:127.0.0.1,IP:::1${EXTRA_SANS:+,$EXTRA_SANS}"

command -v openssl >/dev/null || { echo "dev-certs.sh: openssl not found (apt-get install -y openssl)" >&2; exit 1; }
umask 077
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

if [ -n "${FORCE:-}" ] || [ ! -s "$OUT/ca.crt" ] || [ ! -s "$OUT/ca.key" ]; then
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TMP/ca.key" 2>/dev/null
  openssl req -x509 -new -sha256 -key "$TMP/ca.key" -days "$CA_DAYS" \
    -subj "/O=arca development/CN=arca dev CA $(date -u +%Y%m%d%H%M%S)" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" \
    -out "$TMP/ca.crt"
  mv "$TMP/ca.key" "$OUT/ca.key"
  mv "$TMP/ca.crt" "$OUT/ca.crt"
  echo "dev-certs: new CA in $OUT/ca.crt"
else
  echo "dev-certs: reusing the CA in $OUT/ca.crt (FORCE=1 for a new one)"
fi

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TMP/server.key" 2>/dev/null
openssl req -new -sha256 -key "$TMP/server.key" -subj "/O=arca development/CN=localhost" -out "$TMP/server.csr"
cat >"$TMP/server.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=$SANS
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EXT
openssl x509 -req -sha256 -in "$TMP/server.csr" -CA "$OUT/ca.crt" -CAkey "$OUT/ca.key" \
  -set_serial "0x$(openssl rand -hex 16)" -days "$DAYS" -extfile "$TMP/server.ext" \
  -out "$TMP/server.crt" 2>/dev/null
openssl verify -CAfile "$OUT/ca.crt" "$TMP/server.crt" >/dev/null
mv "$TMP/server.key" "$OUT/server.key"
mv "$TMP/server.crt" "$OUT/server.crt"
chmod 600 "$OUT/ca.key" "$OUT/server.key"
chmod 644 "$OUT/ca.crt" "$OUT/server.crt"
if [ -n "${KEY_UID:-}" ]; then # e.g. 10001, the arca user of the Docker image
  chown "$KEY_UID:$KEY_UID" "$OUT/server.key"
fi

cat <<MSG
dev-certs: wrote $OUT/{ca.crt,ca.key,server.crt,server.key}
  server certificate: $(openssl x509 -in "$OUT/server.crt" -noout -enddate), SAN $SANS

Use them:
  # in the server config (e.g. a copy of config/arca.toml)
  tls_cert_file = "$OUT/server.crt"
  tls_key_file  = "$OUT/server.key"

  arca server --config arca.toml
  export ARCA_ADDR=https://127.0.0.1:8200 ARCA_CACERT=$OUT/ca.crt   # the arca CLI
  curl --cacert $OUT/ca.crt https://127.0.0.1:8200/v1/sys/health
  python: hvac.Client(url="https://127.0.0.1:8200", verify="$OUT/ca.crt")

  # the Docker image runs as uid 10001: the key must be readable by it, and only the
  # server pair belongs in the container (not ca.key)
  chown 10001:10001 $OUT/server.key      # or: KEY_UID=10001 scripts/dev-certs.sh
  docker run -p 8200:8200 -v arca-data:/var/lib/arca \\
    -v $OUT/server.crt:/etc/arca/tls/server.crt:ro \\
    -v $OUT/server.key:/etc/arca/tls/server.key:ro arca
MSG
