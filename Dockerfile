# The image behaves like registry:2: port 5000, the volume /var/lib/registry, and the same
# REGISTRY_* environment variables (README: "Switching from registry:2"). Base images are
# fully qualified, so podman/buildah build it without a registries.conf search list.
#   podman build -t wharf .          (or docker build)
#   podman run -d -p 5000:5000 -v /srv/registry:/var/lib/registry wharf
FROM docker.io/library/rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Cargo.toml names the integration-test target, so its folder must exist to build at all.
COPY tests ./tests
RUN cargo build --release --locked --bin wharf

FROM docker.io/library/debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/wharf /usr/local/bin/wharf
COPY conf/container.toml /etc/wharf/wharf.toml
# Where registry:2's image keeps its config.yml: a user's own, mounted here, is read over
# wharf.toml (this one sets nothing), and REGISTRY_* variables apply over both.
COPY conf/registry-config.yml /etc/docker/registry/config.yml
ENV WHARF_CONFIG=/etc/wharf/wharf.toml
ENV REGISTRY_CONFIGURATION_PATH=/etc/docker/registry/config.yml
# Run in / as registry:2 does, so relative paths in variables mean the same.
WORKDIR /
VOLUME ["/var/lib/registry"]
EXPOSE 5000
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/wharf"]
CMD ["serve"]
