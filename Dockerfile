# syntax=docker/dockerfile:1
# arca server image.
#   docker build -t arca .
#   docker run -d --name arca -p 8200:8200 \
#     -v arca-data:/var/lib/arca \
#     -v "$PWD/dev-certs/server.crt:/etc/arca/tls/server.crt:ro" \
#     -v "$PWD/dev-certs/server.key:/etc/arca/tls/server.key:ro" arca
# TLS is on by default: /etc/arca/arca.toml (from config/arca.toml) expects the certificate
# and key at /etc/arca/tls/server.{crt,key}, mounted by the operator (scripts/dev-certs.sh
# makes a development pair; the key must be readable by uid 10001). The server starts
# uninitialized and sealed: `arca operator init` / `unseal` (or hvac) against it.

# ---------------------------------------------------------------- build
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
# cache mounts keep the crates.io downloads and the target dir between builds;
# the binary leaves through /out, outside the cached target dir
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    bash scripts/build-release.sh /out

# ---------------------------------------------------------------- runtime
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 arca \
 && useradd --uid 10001 --gid 10001 --no-log-init --no-create-home --home-dir /var/lib/arca \
      --shell /usr/sbin/nologin arca \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/arca \
 && install -d -o root -g root -m 0755 /etc/arca /etc/arca/tls
COPY --from=build /out/arca /usr/local/bin/arca
COPY --chmod=0644 config/arca.toml /etc/arca/arca.toml
USER 10001:10001
WORKDIR /var/lib/arca
VOLUME /var/lib/arca
EXPOSE 8200
ENTRYPOINT ["arca"]
CMD ["server", "--config", "/etc/arca/arca.toml"]
