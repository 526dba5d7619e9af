# Multi-stage build: compile in the Rust image, ship a slim Debian with just the binary.
#   docker build -t wharf .
#   docker run -d -p 5000:5000 -v /data:/var/lib/registry wharf
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY conf ./conf
COPY tests ./tests
RUN cargo build --release --locked --bin wharf

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/wharf /usr/local/bin/wharf
COPY conf/container.toml /etc/wharf/wharf.toml
ENV WHARF_CONFIG=/etc/wharf/wharf.toml
VOLUME /var/lib/registry
EXPOSE 5000
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/wharf"]
CMD ["serve"]
