# browserd with Debian's Chromium. Build: docker build -t browserd .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin browserd

FROM debian:bookworm-slim
# fonts: pages render text; ca-certificates: HTTPS from the browser.
RUN apt-get update \
    && apt-get install -y --no-install-recommends chromium ca-certificates fonts-liberation fonts-noto-color-emoji \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/browserd /usr/local/bin/browserd
ENV BROWSERD_LISTEN=0.0.0.0:50051 \
    BROWSERD_CDP_LISTEN=0.0.0.0:50052 \
    BROWSERD_DATA_DIR=/var/lib/browserd
VOLUME /var/lib/browserd
EXPOSE 50051 50052
ENTRYPOINT ["browserd"]
CMD ["serve"]
