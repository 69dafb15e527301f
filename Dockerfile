# git-sidecar container image: a fully static binary and the CA bundle in an
# otherwise empty (FROM scratch) image. No shell, no /etc/passwd entry and no
# HOME needed; runs as UID/GID 65533 (git-sync's) by default and under any
# other UID; works with a read-only root filesystem. As PID 1 it runs its own
# minimal init (reaps orphans, forwards signals), as git-sync does.
#
# Normal build (needs the network to pull the Rust image and crates):
#   docker build -t git-sidecar .            (or: podman build -t git-sidecar .)
#
# Offline build of the runtime stage from a prebuilt static binary (what CI
# does; the stages "compile" and "dist" are skipped):
#   dist=$(mktemp -d)
#   cp "$(scripts/build-static)" "$dist/git-sidecar"
#   cp /etc/ssl/certs/ca-certificates.crt "$dist/"
#   podman build --pull=never --network=none --build-context dist="$dist" \
#     --target runtime -t git-sidecar .
# (`docker buildx build --build-context dist=...` works the same way.) The
# dist directory holds exactly what the "dist" stage below would: the two
# files git-sidecar and ca-certificates.crt at its top level.

# Compile: glibc static-pie, checked by scripts/build-static. The cache
# mounts keep the crate registry and the target directory between builds.
# The exact toolchain build/code.order was made with: symbol names, and so
# the code order (docs/architecture.md, "Build"), depend on it.
FROM docker.io/library/rust:1.95.0-bookworm AS compile
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    bin="$(scripts/build-static)" \
    && install -D -m 0755 "$bin" /out/git-sidecar \
    && install -m 0644 /etc/ssl/certs/ca-certificates.crt /out/ca-certificates.crt

# Dist: exactly the two files the runtime needs, at the top level. Replace
# this stage with --build-context dist=DIR to build offline.
FROM scratch AS dist
COPY --from=compile /out/git-sidecar /out/ca-certificates.crt /

# Runtime.
FROM scratch AS runtime
COPY --from=dist /ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=dist /git-sidecar /git-sidecar
LABEL org.opencontainers.image.title="git-sidecar" \
      org.opencontainers.image.description="Keeps a web server's content in step with a git repository (a git-sync v4 drop-in)" \
      org.opencontainers.image.licenses="Apache-2.0"
# rustls reads the bundle through these (webpki/native roots); also what
# OpenSSL-style tools in a debug sidecar would look at.
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
# What git-sync's image sets and manifests rely on: the root defaults to /git
# (mount the volume there and leave --root out), HOME and the working
# directory are /tmp (mount an emptyDir there with a read-only root).
ENV GITSYNC_ROOT=/git \
    HOME=/tmp
WORKDIR /tmp
# The HTTP port used in the documented examples (--http-bind :8080).
EXPOSE 8080
USER 65533:65533
ENTRYPOINT ["/git-sidecar"]
