# browserd with Debian's Chromium. Build: docker build -t browserd .
# At first start the entrypoint makes an admin API key and keeps it in the
# data volume (see deploy/docker-entrypoint.sh); read it with
#   docker exec <container> cat /var/lib/browserd/admin-key
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin browserd

FROM debian:bookworm-slim
# fonts: pages render text; ca-certificates: HTTPS from the browser;
# bubblewrap: the jail every browser runs in; uidmap: newuidmap and
# newgidmap, which give browsers ids of their own (see below).
RUN apt-get update \
    && apt-get install -y --no-install-recommends chromium ca-certificates fonts-liberation fonts-noto-color-emoji bubblewrap uidmap \
    && rm -rf /var/lib/apt/lists/*
# browserd never runs as root. Its browsers never run as this user: at
# start browserd maps the user's subordinate ids into a user namespace of
# its own and gives each browser one of them, so no page can read a file
# of browserd's. The data dir is made here, owned by it, so a fresh named
# volume inherits that owner; so is the directory a cluster's nodes share
# their connect-token secret in.
RUN useradd --system --uid 10001 --home-dir /var/lib/browserd --shell /usr/sbin/nologin browserd \
    && usermod --add-subuids 100000-165535 --add-subgids 100000-165535 browserd \
    && install -d -o browserd -g browserd -m 0700 /var/lib/browserd /var/lib/browserd-cluster
COPY --from=build /src/target/release/browserd /usr/local/bin/browserd
# Executable in git; no `COPY --chmod`, which the legacy builder lacks.
COPY deploy/docker-entrypoint.sh /usr/local/bin/browserd-entrypoint
USER browserd
ENV BROWSERD_LISTEN=0.0.0.0:50051 \
    BROWSERD_CDP_LISTEN=0.0.0.0:50052 \
    BROWSERD_DATA_DIR=/var/lib/browserd
VOLUME /var/lib/browserd
EXPOSE 50051 50052
ENTRYPOINT ["browserd-entrypoint"]
CMD ["serve"]
